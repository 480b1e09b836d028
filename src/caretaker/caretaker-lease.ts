import type { Database } from '../db/executor.ts';

/**
 * One caretaker per service at a time: a lease row (`settings`,
 * `caretaker_lease` = `<token>|<expiry>`) taken at the start of a run and
 * renewed every third of its length while the run goes on. A run whose
 * process dies — killed, or cut off from its database — stops renewing, and
 * the next run may start once the lease has run out: within `leaseMs`, not
 * after a fixed quarter of an hour.
 */
export class CaretakerLease {
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly db: Database,
    private readonly schemaSql: string,
    private readonly token: string,
    leaseMs: number,
  ) {
    this.timer = setInterval(
      () => {
        this.renew(leaseMs).catch(() => {
          // A renewal that fails (the database restarting) is tried again next time;
          // if none gets through the lease runs out, as it would for a dead process.
        });
      },
      Math.max(50, Math.floor(leaseMs / 3)),
    );
    this.timer.unref();
  }

  /** The lease, or undefined when another run holds one that has not run out. */
  static async take(
    db: Database,
    schemaSql: string,
    leaseMs: number,
  ): Promise<CaretakerLease | undefined> {
    const token = `${process.pid}:${Date.now()}:${Math.random()}`;
    const r = await db.query(
      `INSERT INTO ${schemaSql}.settings (name, value)
       VALUES ('caretaker_lease', $1 || '|' || (now() + make_interval(secs => $2::double precision / 1000))::text)
       ON CONFLICT (name) DO UPDATE SET value = excluded.value
       WHERE split_part(settings.value, '|', 2)::timestamptz < now()
       RETURNING 1`,
      [token, leaseMs],
    );
    return r.rows.length === 1 ? new CaretakerLease(db, schemaSql, token, leaseMs) : undefined;
  }

  private async renew(leaseMs: number): Promise<void> {
    await this.db.query(
      `UPDATE ${this.schemaSql}.settings
       SET value = $1 || '|' || (now() + make_interval(secs => $2::double precision / 1000))::text
       WHERE name = 'caretaker_lease' AND split_part(value, '|', 1) = $1`,
      [this.token, leaseMs],
    );
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.db.query(
      `DELETE FROM ${this.schemaSql}.settings WHERE name = 'caretaker_lease' AND split_part(value, '|', 1) = $1`,
      [this.token],
    );
  }
}
