/**
 * The catalog of every error code Emperor can raise. Codes are stable: never renamed, never reused.
 * `docs/errors.md` has one row per code with how to fix it; a test keeps the two lists equal.
 */
export const ERROR_CODES = {
  EMPEROR_ERR_USAGE: 'the command line is wrong',
  EMPEROR_ERR_CONFIG_READ: 'a vassal file cannot be read',
  EMPEROR_ERR_CONFIG_NAME: 'a vassal file name is not usable',
  EMPEROR_ERR_CONFIG_ENCODING: 'a vassal file is not UTF-8 text',
  EMPEROR_ERR_CONFIG_SYNTAX: 'a vassal file does not parse',
  EMPEROR_ERR_CONFIG_SECTION: 'a vassal file has no usable [uwsgi] or [vassal] section',
  EMPEROR_ERR_CONFIG_UNKNOWN_KEY: 'a vassal file uses a key Emperor does not know',
  EMPEROR_ERR_CONFIG_DUPLICATE_KEY: 'a single-valued key is given more than once',
  EMPEROR_ERR_CONFIG_MISSING_KEY: 'a required key is missing',
  EMPEROR_ERR_CONFIG_VALUE: 'a key has a value of the wrong form or out of range',
  EMPEROR_ERR_CONFIG_USER: 'a user or group is unknown or not allowed',
  EMPEROR_ERR_CONFIG_LIMIT: 'a vassal asks for more than the operator allows',
  EMPEROR_ERR_JAIL_HELPER: 'the emperor-jail helper is missing or failed to start',
  EMPEROR_ERR_JAIL_SETUP: 'a step of building or entering a jail failed',
  EMPEROR_ERR_JAIL_ROOTFS: 'the root file system of a jail is missing or unsafe',
  EMPEROR_ERR_JAIL_CGROUP: 'a cgroup controller is missing or a cgroup cannot be set up',
  EMPEROR_ERR_JAIL_USER: 'a jail has no usable unprivileged user',
  EMPEROR_ERR_JAIL_STOPPED: 'the jail is not running',
  EMPEROR_ERR_NET: 'a jail\'s network (net = nat) cannot be set up',
  EMPEROR_ERR_CONTROL: 'the emperor daemon cannot be reached, or refused a request',
  EMPEROR_ERR_NO_VASSAL: 'the emperor has no vassal of that name',
  EMPEROR_ERR_ALREADY_RUNNING: 'another emperor governs this run dir',
  EMPEROR_ERR_SYSTEMD: 'the emperor cannot speak systemd\'s notify protocol',
  EMPEROR_ERR_INTERNAL: 'a bug in Emperor',
} as const;

/** A stable error code, e.g. `EMPEROR_ERR_CONFIG_VALUE`. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Every code in the catalog, in catalog order. */
export const errorCodes = (): ErrorCode[] => Object.keys(ERROR_CODES) as ErrorCode[];
