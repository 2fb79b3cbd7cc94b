// A real `strata standalone` process for one test file, with a client and an admin on it: started in
// beforeAll, stopped in afterAll. Read the fields inside tests (they are set once beforeAll ran).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { StandaloneProcess } from '@strata/runtime/testing';
import Pulsar, { type Client } from '@strata/client';
import { AdminApi, parseServiceUrl } from '@strata/client/admin';

export interface StandaloneEnv {
  standalone: StandaloneProcess;
  client: Client;
  admin: AdminApi;
}

export function useStandalone(): StandaloneEnv {
  const env = {} as StandaloneEnv;
  beforeAll(async () => {
    env.standalone = await StandaloneProcess.start();
    env.client = new Pulsar.Client({ serviceUrl: env.standalone.serviceUrl, operationTimeoutSeconds: 10 });
    env.admin = new AdminApi(parseServiceUrl(env.standalone.serviceUrl));
  }, 90_000);
  afterAll(async () => {
    env.admin?.close();
    await env.client?.close();
    await env.standalone?.stop();
  });
  return env;
}

export const unique = (prefix: string): string => `${prefix}-${randomBytes(4).toString('hex')}`;
