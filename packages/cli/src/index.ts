export { roles, type Role, type RoleDeps, type RunningRole } from './roles.js';
export { standaloneConfigSpec, startStandalone, type RunningStandalone, type StandaloneConfig } from './standalone.js';
