// The DMA-API side the core calls into (drivers/iommu/dma-iommu.c): the IOVA cookie of DMA
// domains, flush-queue set-up, and `iommu_setup_dma_ops`. The DMA layer (src/dma) installs its
// real implementation with `core.setDmaIommuHooks`; until then the defaults below model exactly
// the parts the core's behaviour depends on: the cookie type, and the DMA_FQ → DMA downgrade
// when the IOMMU lacks IOMMU_CAP_DEFERRED_FLUSH (core §2.4, "Strict/lazy detail").

import { err, OK, type Result } from "../base/result.js";
import type { Device } from "../bus/device.js";
import { IOMMU_CAP, IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_DMA_FQ } from "./constants.js";
import type { IommuDomain } from "./domain.js";

export interface DmaIommuHooks {
  /** `iommu_get_dma_cookie`: give a DMA-API domain its IOVA cookie (cookie_type DMA_IOVA). */
  getDmaCookie(domain: IommuDomain): Result;
  /** `iommu_put_dma_cookie`. */
  putDmaCookie(domain: IommuDomain): void;
  /** `iommu_dma_init_fq`: bring up the flush queue of a DMA domain. */
  initFq(domain: IommuDomain): Result;
  /**
   * `iommu_setup_dma_ops`: route `dev`'s DMA API through `domain` when it is a DMA domain
   * (`iommu_dma_init_domain`, which turns DMA_FQ into DMA without deferred-flush support).
   * `capable` answers `device_iommu_capable(dev, cap)`.
   */
  setupDmaOps(dev: Device, domain: IommuDomain, capable: (cap: number) => boolean): void;
}

export const defaultDmaIommuHooks: DmaIommuHooks = {
  getDmaCookie(domain) {
    if (domain.cookieType !== "NONE") return err("EEXIST");
    domain.cookieType = "DMA_IOVA";
    domain.iovaCookie = { fq: false, state: null };
    return OK;
  },
  putDmaCookie(domain) {
    domain.iovaCookie = null;
    domain.cookieType = "NONE";
  },
  initFq(domain) {
    if (domain.iovaCookie === null) return err("EINVAL");
    domain.iovaCookie.fq = true;
    return OK;
  },
  setupDmaOps(dev, domain, capable) {
    dev.dmaIommu = domain.isDma();
    if (!dev.dmaIommu) return;
    if (domain.cookieType !== "DMA_IOVA" || domain.iovaCookie === null) {
      // "Failed to set up IOMMU for device; retaining platform DMA ops"
      dev.dmaIommu = false;
      return;
    }
    // If the flush queue cannot be used, fall back to strict invalidation.
    if (domain.type === IOMMU_DOMAIN_DMA_FQ) {
      if (!capable(IOMMU_CAP.DEFERRED_FLUSH) || !defaultDmaIommuHooks.initFq(domain).ok) {
        domain.type = IOMMU_DOMAIN_DMA;
      }
    }
  },
};
