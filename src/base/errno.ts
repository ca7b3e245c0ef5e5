// Linux errno names and values, as the kernel returns them (negated) from the calls we model.

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  ENOSYS: 38,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ETIMEDOUT: 110,
  EPROBE_DEFER: 517,
} as const;

/** The name of an errno, e.g. `"EBUSY"`. Results carry names; `errnoValue` gives the number. */
export type Errno = keyof typeof ERRNO;

const NAMES = new Set<string>(Object.keys(ERRNO));

export function isErrno(name: string): name is Errno {
  return NAMES.has(name);
}

/** The kernel's return value for an errno: `-16` for `EBUSY`. */
export function errnoValue(name: Errno): number {
  return -ERRNO[name];
}

export function errnoNames(): readonly Errno[] {
  return Object.keys(ERRNO) as Errno[];
}
