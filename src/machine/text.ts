// Small wording helpers shared by the machine's text reports (demo report, inspect).

/** "1 page", "2 pages", "3 misses". */
export function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : what.endsWith("s") ? "es" : "s"}`;
}

/** A group's DMA ownership in words: owner_cnt counts kernel drivers or one owner's claims. */
export function ownershipText(ownerCnt: number, owner: string | null): string {
  if (ownerCnt === 0) return "no DMA owner";
  return owner === null
    ? `${plural(ownerCnt, "kernel driver")} on the DMA API`
    : `owned by ${owner}`;
}
