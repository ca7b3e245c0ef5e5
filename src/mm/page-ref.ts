// Who holds a page frame the mm handed out (include/linux/page_ref.h, mm/gup.c's pin accounting).
//
// Every frame of a process page has one owner reference: the page table that maps a private
// page, or the shmem object that holds a shared one. DMA pins (FOLL_PIN) are further
// references: Linux adds GUP_PIN_COUNTING_BIAS to the folio's refcount per pin, so when the
// owner drops its reference (zap at munmap or exit_mmap, the last put of a shmem object) a
// pinned page stays allocated, reachable only through the pin, until the last
// unpin_user_page frees it. Here the owner's reference is implicit (the frame is allocated)
// and pins are counted per frame; `put` is the owner's folio_put.
//
// The shared zero page is pinned like any other page (its count is kept) but never put.

import { hex } from "../base/bits.js";
import { SimError } from "../base/errors.js";
import type { Json } from "../base/json.js";
import type { FrameAllocator } from "../hw/memory.js";

export class PageRefs {
  readonly frames: FrameAllocator;
  /** Frame → pins held on it (folio_maybe_dma_pinned when > 0). */
  readonly #pins = new Map<number, number>();
  /** Pinned frames whose owner has let go of them: the last unpin frees them. */
  readonly #orphans = new Set<number>();

  constructor(frames: FrameAllocator) {
    this.frames = frames;
  }

  /** A fresh zeroed frame with its owner reference, or -1 when memory is out. */
  alloc(): number {
    return this.frames.alloc();
  }

  /** Pins held on frame `ppn` (0 when none). */
  pinCount(ppn: number): number {
    return this.#pins.get(ppn) ?? 0;
  }

  /** Frames with at least one pin. */
  get pinnedFrames(): number {
    return this.#pins.size;
  }

  /** Frames their owner has freed that pins alone keep allocated. */
  get orphanedFrames(): number {
    return this.#orphans.size;
  }

  /** try_grab_folio(FOLL_PIN): one more pin on an allocated frame. */
  pin(ppn: number): void {
    if (!this.frames.isAllocated(ppn) || this.#orphans.has(ppn)) {
      throw new SimError(`pinning frame ${hex(ppn)}, which no page owns`);
    }
    this.#pins.set(ppn, this.pinCount(ppn) + 1);
  }

  /** unpin_user_page: drops one pin; the last pin on an orphaned frame frees it. */
  unpin(ppn: number): void {
    const n = this.#pins.get(ppn);
    if (n === undefined) throw new SimError(`unpinning frame ${hex(ppn)}, which is not pinned`);
    if (n > 1) {
      this.#pins.set(ppn, n - 1);
      return;
    }
    this.#pins.delete(ppn);
    if (this.#orphans.delete(ppn)) this.frames.free(ppn);
  }

  /** The owner's folio_put: frees the frame now, or leaves it to its pins. */
  put(ppn: number): void {
    if (this.#orphans.has(ppn)) throw new SimError(`frame ${hex(ppn)} put twice`);
    if (this.#pins.has(ppn)) this.#orphans.add(ppn);
    else this.frames.free(ppn);
  }

  toJSON(): Json {
    return { pinned_frames: this.#pins.size, orphaned_frames: this.#orphans.size };
  }
}
