import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, field, loadConfig } from '../src/index.js';

const spec = {
  grpcPort: field.int(6650, 'gRPC port', { min: 0, max: 65535 }),
  journalGroupWaitMs: field.number(1, 'group commit wait', { min: 0 }),
  advertisedAddress: field.string('', 'address'),
  fsyncEnabled: field.boolean(true, 'fsync'),
  bookies: field.list([], 'bookies'),
  logLevel: field.oneOf(['debug', 'info'] as const, 'info', 'level'),
};

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('fills defaults', () => {
    expect(loadConfig(spec, { argv: [], env: {} })).toEqual({
      grpcPort: 6650, journalGroupWaitMs: 1, advertisedAddress: '', fsyncEnabled: true, bookies: [], logLevel: 'info',
    });
  });

  it('takes flags over env over file over defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-config-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'grpcPort: 1000\njournalGroupWaitMs: 3\nadvertisedAddress: from-file\nbookies: [a, b]\n');
    const config = loadConfig(spec, {
      argv: ['--config', file, '--grpc-port', '2000', '--no-fsync-enabled'],
      env: { STRATA_GRPC_PORT: '3000', STRATA_JOURNAL_GROUP_WAIT_MS: '2.5' },
    });
    expect(config).toMatchObject({ grpcPort: 2000, journalGroupWaitMs: 2.5, advertisedAddress: 'from-file', fsyncEnabled: false, bookies: ['a', 'b'] });
  });

  it('reads STRATA_CONFIG and splits comma lists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-config-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'logLevel: debug\n');
    expect(loadConfig(spec, { argv: ['--bookies', 'x, y'], env: { STRATA_CONFIG: file } })).toMatchObject({ logLevel: 'debug', bookies: ['x', 'y'] });
  });

  it('names the field of a bad value', () => {
    expect(configError(() => loadConfig(spec, { argv: ['--grpc-port', 'abc'], env: {} })).message).toMatch(/--grpc-port.*expected a number/);
    expect(configError(() => loadConfig(spec, { argv: ['--grpc-port', '70000'], env: {} })).message).toMatch(/--grpc-port.*<= 65535/);
    expect(configError(() => loadConfig(spec, { argv: [], env: { STRATA_GRPC_PORT: '1.5' } })).message).toMatch(/STRATA_GRPC_PORT.*integer/);
    expect(configError(() => loadConfig(spec, { argv: ['--log-level', 'loud'], env: {} })).message).toMatch(/--log-level.*one of debug, info/);
    expect(configError(() => loadConfig(spec, { argv: ['--nope', '1'], env: {} })).field).toBe('--nope');
    expect(configError(() => loadConfig(spec, { argv: [], env: { STRATA_FSYNC_ENABLED: 'maybe' } })).message).toMatch(/true or false/);
  });

  it('rejects unknown and mistyped keys in the YAML file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-config-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'grpcPrt: 1\n');
    expect(configError(() => loadConfig(spec, { argv: ['--config', file], env: {} })).field).toBe('grpcPrt');
    writeFileSync(file, 'bookies: 7\n');
    expect(configError(() => loadConfig(spec, { argv: ['--config', file], env: {} })).message).toMatch(/bookies.*list of strings/);
    expect(configError(() => loadConfig(spec, { argv: ['--config', join(dir, 'missing.yaml')], env: {} })).field).toBe('--config');
  });

  it('describes every field with its flag and env var', () => {
    const help = describeConfig(spec);
    expect(help).toContain('--journal-group-wait-ms');
    expect(help).toContain('STRATA_JOURNAL_GROUP_WAIT_MS');
    expect(help).toContain('(debug|info)');
  });
});
