import t from 'tap';
import { parseVassalText, type CronSpec } from '@emperor/config';
import { CronScheduler, type Clock } from '../src/cron-scheduler.js';
import { matches } from '../src/cron-match.js';

const job = (line: string, key = 'cron'): CronSpec => {
  const r = parseVassalText(`[uwsgi]\nuid = www-data\n${key} = ${line}\n`, 'c.ini');
  if (!r.ok) throw new Error(r.problems.map((p) => p.message).join());
  const j = r.spec.cron[0];
  if (j === undefined) throw new Error('no job');
  return j;
};
const at = (s: string) => new Date(s); // local time

t.test('uWSGI numeric form: -1 any, -N every N, exact values, weekday 7 is Sunday', async (t) => {
  t.ok(matches(job('0 -2 -1 -1 -1 x'), at('2026-11-23T04:00:00')));
  t.notOk(matches(job('0 -2 -1 -1 -1 x'), at('2026-11-23T05:00:00')));
  t.notOk(matches(job('0 -2 -1 -1 -1 x'), at('2026-11-23T04:01:00')));
  t.ok(matches(job('59 23 -1 -1 -1 x'), at('2026-11-23T23:59:00')));
  t.ok(matches(job('30 8 -1 -1 7 x'), at('2026-11-22T08:30:00')), '2026-11-22 is a Sunday');
  t.notOk(matches(job('30 8 -1 -1 7 x'), at('2026-11-23T08:30:00')));
  t.ok(matches(job('0 0 1 -1 1 x'), at('2026-11-23T00:00:00')), 'day and weekday both set: either matches (Monday)');
  t.ok(matches(job('0 0 1 -1 1 x'), at('2026-12-01T00:00:00')), '(the 1st)');
  t.notOk(matches(job('0 0 1 -1 1 x'), at('2026-11-24T00:00:00')));
  t.ok(matches(job('-15 -1 -1 -1 -1 x'), at('2026-11-23T10:45:00')));
});

t.test('standard crontab expressions through croner, in local time', async (t) => {
  t.ok(matches(job('*/10 * * * * x'), at('2026-11-23T10:20:00')));
  t.notOk(matches(job('*/10 * * * * x'), at('2026-11-23T10:21:00')));
  t.ok(matches(job('0 9 * * MON-FRI x'), at('2026-11-23T09:00:00')));
  t.notOk(matches(job('0 9 * * MON-FRI x'), at('2026-11-22T09:00:00')));
  t.ok(matches(job('@daily x'), at('2026-11-23T00:00:00')));
  t.ok(matches(job('minute=5,hour=-3 x', 'cron2'), at('2026-11-23T06:05:00')));
});

/** A clock the test moves by hand. */
const fakeClock = (start: number) => {
  let now = start;
  const timers: Array<{ at: number; fn: () => void }> = [];
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const timer = { at: now + ms, fn };
      timers.push(timer);
      return timer;
    },
    clearTimeout: (h) => {
      const i = timers.indexOf(h as never);
      if (i >= 0) timers.splice(i, 1);
    },
  };
  const advance = (ms: number) => {
    const end = now + ms;
    for (;;) {
      timers.sort((a, b) => a.at - b.at);
      const next = timers[0];
      if (next === undefined || next.at > end) break;
      timers.shift();
      now = next.at;
      next.fn();
    }
    now = end;
  };
  return { clock, advance };
};

t.test('the scheduler fires at each matching minute, once per minute, across a replaced scheduler', async (t) => {
  const start = at('2026-11-23T10:00:30').getTime();
  const { clock, advance } = fakeClock(start);
  const runs: string[] = [];
  const lastRun = new Map<string, number>();
  const every5 = job('*/5 * * * * x');
  const s1 = new CronScheduler([every5], (_j, m) => runs.push(m.toTimeString().slice(0, 5)), lastRun, clock);
  s1.start();
  advance(11 * 60_000);
  t.same(runs, ['10:05', '10:10']);
  // A reload mid-minute: the old scheduler stops, a new one starts, and 10:10 is not run again.
  s1.stop();
  const s2 = new CronScheduler([every5], (_j, m) => runs.push(m.toTimeString().slice(0, 5)), lastRun, clock);
  s2.tick(new Date(at('2026-11-23T10:10:00').getTime()));
  s2.start();
  advance(5 * 60_000);
  s2.stop();
  t.same(runs, ['10:05', '10:10', '10:15'], 'no minute twice');
});
