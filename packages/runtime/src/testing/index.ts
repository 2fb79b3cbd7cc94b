export { freePort, freePorts, tempDir } from './ports.js';
export { ChildProcessHandle, type SpawnOptions } from './process.js';
export { strataBin, spawnRole } from './roles.js';
export { StandaloneProcess } from './standalone.js';
