import { readFileSync } from "node:fs";
import pg from "pg";

/**
 * CPU milliseconds (user + system) the PostgreSQL backends serving `database` have used so far,
 * read from /proc (the bench runs beside its PostgreSQL). On a shared machine wall time moves
 * with the neighbours' load, CPU time far less, so two runs compare by it.
 */
export async function backendCpuMs(adminUrl: string, database: string): Promise<number> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  let pids: number[];
  try {
    pids = (await admin.query("SELECT pid FROM pg_stat_activity WHERE datname = $1", [database])).rows.map((row) => row.pid);
  } finally {
    await admin.end();
  }
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  return pids.reduce((total, pid) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return total + (Number(fields[11]) + Number(fields[12])) * tick;
    } catch {
      return total; // a backend that has just gone
    }
  }, 0);
}
