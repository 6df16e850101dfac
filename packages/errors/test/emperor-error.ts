import t from 'tap';
import { EmperorError, isEmperorError } from '../src/index.js';

t.test('an EmperorError carries a stable code, a hint and its cause', async (t) => {
  const cause = new Error('EACCES');
  const e = new EmperorError('EMPEROR_ERR_CONFIG_READ', 'alice.ini: expected a readable file, got permission denied', { hint: 'chmod it', cause });
  t.equal(e.code, 'EMPEROR_ERR_CONFIG_READ');
  t.equal(e.hint, 'chmod it');
  t.equal(e.cause, cause);
  t.equal(e.describe(), 'alice.ini: expected a readable file, got permission denied (chmod it)');
  t.ok(e instanceof Error);
});

t.test('isEmperorError tells coded errors apart, optionally by code', async (t) => {
  const e = new EmperorError('EMPEROR_ERR_USAGE', 'bad');
  t.ok(isEmperorError(e));
  t.ok(isEmperorError(e, 'EMPEROR_ERR_USAGE'));
  t.notOk(isEmperorError(e, 'EMPEROR_ERR_INTERNAL'));
  t.notOk(isEmperorError(new Error('plain')));
  t.equal(new EmperorError('EMPEROR_ERR_USAGE', 'no hint').describe(), 'no hint');
});
