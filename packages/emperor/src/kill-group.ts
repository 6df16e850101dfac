/**
 * SIGKILL to a process group inside a jail by its leader's host pid (the helper makes every process it
 * starts a group leader). ESRCH, the group being gone already, is fine.
 */
export const killGroup = (pid: number): void => {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: already gone
  }
};
