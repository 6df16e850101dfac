/** The text of `emperor --help`. */
export const USAGE = `Usage: emperor <command> [options]

Emperor supervises a directory of vassal files (ini, json, yaml): one jailed app per file.

Commands:
  check [--json] [--tyrant] FILE...   validate vassal files; exit 0 if all are good, 1 otherwise.
                                      --json prints each normalized spec (or its problems) as JSON.
                                      --tyrant takes uid/gid from each file's owner, as the daemon would.

Options:
  -h, --help       show this help
  -v, --version    print the version

Docs: docs/vassal-file.md (keys), docs/errors.md (error codes).
`;
