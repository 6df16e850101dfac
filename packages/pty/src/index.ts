export { findPtySocket, runClient } from './client.js';
export type { ClientIo } from './client.js';
export { COLS, frame, FrameError, FrameReader, HELLO, OutputReader, ROWS, STDIN, STDIN_EOF, stdinFrames } from './frames.js';
export type { Frame } from './frames.js';
export { PtyRouter } from './router.js';
export type { RouterEvent } from './router.js';
