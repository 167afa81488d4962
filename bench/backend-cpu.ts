import { readFileSync } from "node:fs";
import pg from "pg";

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

/**
 * CPU milliseconds (user + system, every thread) process `pid` has used so far, from
 * /proc/<pid>/stat; undefined for a process that has gone. The bench runs beside its PostgreSQL
 * and Redis, so their processes are readable too.
 */
export function processCpuMs(pid: number): number | undefined {
  try {
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return undefined;
  }
}

/** The backends serving `database`, but those of `excludeApplication` (none when it is ''). */
async function backendPids(admin: pg.Client, database: string, excludeApplication: string): Promise<number[]> {
  const { rows } = await admin.query("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND ($2 = '' OR application_name <> $2)", [database, excludeApplication]);
  return rows.map((row) => row.pid);
}

/**
 * CPU milliseconds (user + system) the PostgreSQL backends serving `database` have used so far.
 * On a shared machine wall time moves with the neighbours' load, CPU time far less, so two runs
 * compare by it.
 */
export async function backendCpuMs(adminUrl: string, database: string): Promise<number> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return (await backendPids(admin, database, "")).reduce((total, pid) => total + (processCpuMs(pid) ?? 0), 0);
  } finally {
    await admin.end();
  }
}

/**
 * The CPU the backends of one database use over a run, backends that come and go included: every
 * `pollMs` it lists the database's backends (pg_stat_activity) and keeps each one's last CPU
 * reading, so a backend that ends still counts up to its last poll, and one that starts counts
 * from zero. Backends of `excludeApplication` (the bench's own connections, which count receipts)
 * are left out. The admin connection it polls on serves another database, so it is not counted.
 */
export class BackendCpu {
  private readonly admin: pg.Client;
  /** Each backend's CPU when first seen: zero for one that started after the tracker. */
  private readonly baseline = new Map<number, number>();
  private readonly last = new Map<number, number>();
  private first = true;
  private failure: unknown;
  private polling: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    adminUrl: string,
    private readonly database: string,
    private readonly excludeApplication: string,
    private readonly pollMs = 500,
  ) {
    this.admin = new pg.Client({ connectionString: adminUrl, application_name: excludeApplication });
  }

  async start(): Promise<void> {
    await this.admin.connect();
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.pollMs);
  }

  /** CPU milliseconds of the database's backends since `start`, read now. */
  async cpuMs(): Promise<number> {
    await this.poll();
    if (this.failure !== undefined) throw this.failure;
    let total = 0;
    for (const [pid, ms] of this.last) total += ms - (this.baseline.get(pid) ?? 0);
    return total;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
    await this.admin.end();
  }

  private poll(): Promise<void> {
    // One poll at a time: a slow one is waited for, not overlapped.
    this.polling = this.polling.then(async () => {
      for (const pid of await backendPids(this.admin, this.database, this.excludeApplication)) {
        const ms = processCpuMs(pid);
        if (ms === undefined) continue;
        const known = this.last.get(pid);
        if (known !== undefined && ms < known) {
          // The pid was reused by a new backend: the old one's CPU is kept under a key of its own.
          this.last.set(-this.last.size - 1, known - (this.baseline.get(pid) ?? 0));
          this.baseline.delete(pid);
        } else if (known === undefined && this.first) {
          this.baseline.set(pid, ms);
        }
        this.last.set(pid, ms);
      }
      this.first = false;
    }).catch((error: unknown) => {
      // Kept for the next reading to throw: a poll from the timer has no one to throw to.
      this.failure ??= error;
    });
    return this.polling;
  }
}
