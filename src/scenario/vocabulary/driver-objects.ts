// The objects user space holds when it drives the device drivers (scenario bindings): an open
// idxd WQ file (the process's fd and the driver's context) and an iommufd IOAS (the context's fd
// and the ioas_id). Views for step results and expectations.

import type { Json } from "../../base/json.js";
import type { IdxdUserContext } from "../../drivers/dsa/idxd-cdev.js";
import type { IommufdCtx, IommufdIoas } from "../../drivers/vfio/iommufd.js";
import type { Process } from "../../mm/process.js";

/** An open file of an idxd user WQ: the process's fd and the driver's context. */
export class IdxdFile {
  constructor(
    readonly task: Process,
    readonly fd: number,
    readonly ctx: IdxdUserContext,
  ) {}

  toJSON(): Json {
    return { fd: this.fd, ...(this.ctx.toJSON() as { [k: string]: Json }) };
  }
}

/** An IOAS of an iommufd context (the ioctl's fd and ioas_id). */
export class IoasRef {
  constructor(
    readonly ictx: IommufdCtx,
    readonly ioas: IommufdIoas,
  ) {}

  toJSON(): Json {
    return {
      iommufd: this.ictx.name,
      id: this.ioas.id,
      ...(this.ioas.space.toJSON() as { [k: string]: Json }),
    };
  }
}
