import t from 'tap';
import { frame, FrameError, FrameReader, OutputReader, stdinFrames } from '../src/index.js';

t.test('uWSGI frames: stdin with a body, window sizes and signals without one', async (t) => {
  const r = new FrameReader();
  const bytes = Buffer.concat([frame(0, Buffer.from('ls\r')), frame(100, undefined, 40), frame(101, undefined, 120), frame(2)]);
  t.same(r.push(bytes), [
    { kind: 'stdin', data: Buffer.from('ls\r') },
    { kind: 'rows', value: 40 },
    { kind: 'cols', value: 120 },
    { kind: 'signal', signal: 2 },
  ]);
});

t.test('frames split anywhere are reassembled', async (t) => {
  const r = new FrameReader();
  const bytes = Buffer.concat([frame(0, Buffer.from('hello')), frame(100, undefined, 30)]);
  const got = [];
  for (const b of bytes) got.push(...r.push(Buffer.from([b])));
  t.same(got, [{ kind: 'stdin', data: Buffer.from('hello') }, { kind: 'rows', value: 30 }]);
  t.equal(r.pending, 0);
  r.push(Buffer.from([0, 5, 0]));
  t.equal(r.pending, 3, 'a frame cut short is pending, not an error');
});

t.test('garbage frame types are refused with what was expected', async (t) => {
  const r = new FrameReader();
  t.throws(() => r.push(Buffer.from([0, 0, 0, 250])), new FrameError('expected a frame type 0, 1-64, 100, 101, 200 or 201, got 250'));
});

t.test('stdin larger than a frame is split; framed output is parsed back', async (t) => {
  const big = Buffer.alloc(70_000, 7);
  const frames = stdinFrames(big);
  t.equal(frames.length, 2);
  const out = new OutputReader();
  t.same(out.push(Buffer.concat([frame(1, Buffer.from('e')), frame(0, Buffer.from('o'))])), [{ channel: 1, data: Buffer.from('e') }, { channel: 0, data: Buffer.from('o') }]);
});
