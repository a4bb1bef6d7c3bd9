/**
 * contranorm: the ContraNorm layer (Guo et al., ICLR 2023), forward and backward, on
 * `Float32Array` buffers. Per item of `x` `[B, N, D]`:
 *
 *   xn = x / max(||x||, eps)            per row
 *   P  = softmax(xn xn^T / tau)         per row (dualNorm: plus the column softmax)
 *   V  = preNorm ? xn : x
 *   z  = (identity ? (1 + s) V : V) - s P V
 *   y  = LayerNorm(z)
 */
export { contraNorm, contraNormAsync, contraNormBackward, contraNormBackwardAsync } from './api.ts';
export type { ContraNormDeviceResult, ContraNormResult } from './api.ts';
export { backendInfo } from './backend.ts';
export { DeviceTensor } from './device.ts';
export { ContraNorm } from './layer.ts';
export type { ContraNormLayerOptions, LayerCallOptions, Parameter } from './layer.ts';
export { ContraNormError } from './errors.ts';
export type { ErrorCode } from './errors.ts';
export { ContraNormSaved } from './saved.ts';
export type * from './types.ts';
