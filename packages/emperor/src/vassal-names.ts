import { existsSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { vassalNameOf } from '@emperor/config';

/**
 * Which file drives which vassal. The name comes from `@emperor/config` (the file name without its
 * extension); names are compared without case, so `shop.ini`, `shop.yml`, `Shop.json` are one name, and
 * the file that claimed it first keeps it for as long as it exists. A second file is refused, never merged:
 * it cannot take over the first one's vassal, its socket or its logs (in tyrant mode it may be another
 * customer's).
 */
export class VassalNames {
  readonly #holders = new Map<string, { name: string; file: string }>();

  /** The vassal name of a file: config's decision, or the bare file name for one config refuses. */
  static nameOf(file: string): string {
    const id = vassalNameOf(file);
    return 'code' in id ? basename(file, extname(file)) : id.name;
  }

  /** Claims the name of `file`: its vassal name, or the file that holds that name already. */
  claim(file: string): { ok: true; name: string } | { ok: false; name: string; holder: string } {
    const name = VassalNames.nameOf(file);
    const key = name.toLowerCase();
    const held = this.#holders.get(key);
    if (held !== undefined && held.file !== file && existsSync(held.file)) return { ok: false, name: held.name, holder: held.file };
    // The holder's file is gone (a panel renamed shop.ini to shop.yaml): this file takes its vassal over.
    const keep = held?.name ?? name;
    this.#holders.set(key, { name: keep, file });
    return { ok: true, name: keep };
  }

  /** The file that holds `name`, if any. */
  holder(name: string): string | undefined {
    return this.#holders.get(name.toLowerCase())?.file;
  }

  /** Gives the name back when `file` held it (and returns it); undefined for a refused duplicate. */
  release(file: string): string | undefined {
    const key = VassalNames.nameOf(file).toLowerCase();
    const held = this.#holders.get(key);
    if (held?.file !== file) return undefined;
    this.#holders.delete(key);
    return held.name;
  }

  /** True when two files map to one name (compared without case). */
  static same(a: string, b: string): boolean {
    return VassalNames.nameOf(a).toLowerCase() === VassalNames.nameOf(b).toLowerCase();
  }
}
