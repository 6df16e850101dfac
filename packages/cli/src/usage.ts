/** The text of `emperor --help`. */
export const USAGE = `Usage: emperor <command> [options]

Emperor supervises a directory of vassal files (ini, json, yaml): one jailed app per file.

Commands:
  [run] [--run-dir D] [--log-dir D] [--tyrant] [--config emperor.ini] DIR
                                      run the emperor over DIR in the foreground (systemd runs
                                      "emperor /etc/uwsgi/vassals"); SIGTERM stops, SIGHUP reloads all.
                                      Defaults: --run-dir /run/emperor, --log-dir /var/log/emperor.
  status [NAME] [--json]              state, pid, restarts, memory, last error of the vassals
  reload|restart|stop|start NAME      graceful app reload; new jail; graceful stop; start again
  logs NAME [-f]                      the app's log (follow with -f)
  pty [--vassal NAME]                 sshd ForceCommand: a shell in your own vassal's jail, or
                                      $SSH_ORIGINAL_COMMAND (scp, rsync, git) run there
                                      (status, reload... and logs take --run-dir too)
  upgrade                             hand every jail to a newly started emperor (the code installed
                                      now) without stopping any app; the old one exits (SIGUSR2)
  router --http ADDR --subscription-server HOST:PORT [--stats PATH] [--sign-check DIGEST:DIR] ...
                                      the subscription server and HTTP router (uWSGI's packets): routes
                                      each Host to the nodes that announced it (docs/router.md)
  check [--json] [--tyrant] [--config emperor.ini] FILE...
                                      validate vassal files; exit 0 if all are good, 1 otherwise.
                                      --json prints each normalized spec (or its problems) as JSON.
                                      --tyrant takes uid/gid from each file's owner, as the daemon would;
                                      --config applies the operator's defaults and ceilings.

Options:
  -h, --help       show this help
  -v, --version    print the version

Docs: docs/vassal-file.md (keys), docs/errors.md (error codes), docs/router.md (router).
`;
