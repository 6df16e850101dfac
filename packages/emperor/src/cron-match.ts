import { Cron } from 'croner';
import type { CronSpec } from '@emperor/config';

const crons = new Map<string, Cron>();

/**
 * Does a job's schedule match the minute that starts at `minute` (local time, seconds zero)?
 * uWSGI's numeric form: -1 any, -N every N (the field divisible by N), else exact; weekday 7 is Sunday; when
 * both day and weekday are set, either matches (crontab's rule). Standard expressions go through croner.
 */
export const matches = (job: CronSpec, minute: Date): boolean => {
  const s = job.schedule;
  if (s.kind === 'crontab') {
    let c = crons.get(s.expression);
    if (c === undefined) {
      c = new Cron(s.expression, { paused: true });
      crons.set(s.expression, c);
    }
    const next = c.nextRun(new Date(minute.getTime() - 1000));
    return next !== null && next.getTime() === minute.getTime();
  }
  const field = (spec: number, value: number) => spec === -1 || (spec < -1 ? value % -spec === 0 : spec === value);
  const week = s.week === 7 ? 0 : s.week;
  const timeOk = field(s.minute, minute.getMinutes()) && field(s.hour, minute.getHours()) && field(s.month, minute.getMonth() + 1);
  if (!timeOk) return false;
  const dayOk = field(s.day, minute.getDate());
  const weekOk = field(week, minute.getDay());
  return s.day >= 0 && week >= 0 ? dayOk || weekOk : dayOk && weekOk;
};
