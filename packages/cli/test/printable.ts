import t from 'tap';
import { printable } from '../src/printable.js';

t.test('customer bytes cannot drive the operator\'s terminal: escapes, OSC, C1 and DEL become visible', async (t) => {
  t.equal(printable('boom\x1b[2J\x1b]52;c;ZXZpbA==\x07done'), 'boom\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07done', 'clear screen and a clipboard write');
  t.equal(printable('a\x9bb\x7fc\rd'), 'a\\x9bb\\x7fc\\x0dd', 'C1 CSI, DEL and a carriage return that would overwrite the line');
  t.equal(printable('line 1\nline 2\tx'), 'line 1\\x0aline 2\\x09x', 'a one-line field stays one line');
  t.equal(printable('line 1\nline 2\tx', { newlines: true }), 'line 1\nline 2\tx', 'logs keep their lines and tabs');
  t.equal(printable('héllo ✓ 日本'), 'héllo ✓ 日本', 'text is untouched');
});
