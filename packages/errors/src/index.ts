export { ERROR_CODES, errorCodes } from './codes.js';
export type { ErrorCode } from './codes.js';
export { EmperorError, isEmperorError } from './emperor-error.js';
export type { EmperorErrorOptions } from './emperor-error.js';
