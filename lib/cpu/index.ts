import type { BackendImpl } from '../backend.ts';

export const cpuBackend: BackendImpl = {
  name: 'cpu',
  forward() {
    throw new Error('not implemented');
  },
  backward() {
    throw new Error('not implemented');
  },
  async forwardAsync() {
    throw new Error('not implemented');
  },
  async backwardAsync() {
    throw new Error('not implemented');
  },
};
