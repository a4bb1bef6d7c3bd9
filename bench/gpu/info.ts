/**
 * Prints, as one JSON object, what the package finds on this machine: `backendInfo()`, the native
 * module's probe (driver and runtime versions, what is missing) and its allocator counters.
 *
 *   node --import tsx bench/gpu/info.ts
 */
import { backendInfo } from '../../lib/index.ts';
import { loadNative } from '../../lib/native.ts';

const load = loadNative();
const report = {
  backendInfo: backendInfo(),
  native:
    load.addon === null
      ? { error: load.error }
      : {
          version: load.addon.version,
          probe: load.addon.probe(),
          memory: load.addon.memoryStats(),
        },
};
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
