import { beforeAll, describe, expect, it } from "vitest";
import { useServiceHarness } from "../support/harness.js";
import { adminQuery } from "../support/test-env.js";

// The usage API reads usage_hourly alone; these tests fill it directly, as the rollup would. Rows
// with no receipts behind them are what reconcile reports, so the books are not checked here.
const h = useServiceHarness({}, { worker: false, booksTieOut: false });

type Hourly = { account: string; hour: string; model?: string; key?: string; team?: string; calls?: number; credits: number };

async function insertHourly(rows: Hourly[]): Promise<void> {
  const values = rows.map((row) => [
    row.account, row.hour, row.model ?? "", row.key ?? "", row.team ?? "",
    // calls = free + priced + reported; charged = priced + reported credits.
    row.calls ?? 1, 0, row.calls ?? 1, 0, 10, 2, 1, 5, 3, row.credits, row.credits, 0,
  ]);
  const columns = 17;
  await h.deps.database.pool.query(
    `INSERT INTO usage_hourly (billing_account_id, hour, model, key_hash, team_id, calls, free_calls, priced_calls, reported_calls,
       input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, charged_credits, priced_credits, reported_credits)
     VALUES ${values.map((_, r) => `(${Array.from({ length: columns }, (_, c) => `$${r * columns + c + 1}`).join(", ")})`).join(", ")}`,
    values.flat(),
  );
}

async function createAccount(account: string): Promise<void> {
  const answer = await h.admin("POST", `/v1/accounts/${encodeURIComponent(account)}/grants`, { credits: 1, reference: `open-${account}` });
  expect(answer.statusCode, answer.body).toBe(201);
}

type Row = { period_start: string; group?: string | null; calls: number; charged_credits: number; input_tokens: number };
type Page = { billing_account_id: string | null; rows: Row[]; next_cursor: string | null; group_by: string | null };

async function usage(path: string): Promise<Page> {
  const answer = await h.admin("GET", path);
  expect(answer.statusCode, answer.body).toBe(200);
  return answer.json();
}

const credits = (page: Page) => page.rows.map((row) => [row.period_start, ...(row.group === undefined ? [] : [row.group]), row.charged_credits]);

beforeAll(async () => {
  // The database's sessions run 14 hours ahead of UTC (Kiribati): a bucket taken in the
  // session's time zone would move the last hours of a UTC day into the next day.
  // Before the pool's first connection: every session it opens starts in that zone.
  expect(h.deps.database.pool.totalCount).toBe(0);
  await adminQuery(`ALTER DATABASE ${new URL(h.settings.databaseUrl).pathname.slice(1)} SET timezone TO 'Pacific/Kiritimati'`);
  for (const account of ["acct-edges", "acct-pages", "acct-other", "acct-empty", "top-a", "top-b", "top-c", "top-d"]) await createAccount(account);
  await insertHourly([
    // A call at 23:30 UTC on 31 January is in the 23:00 hour: January, however far ahead the session's zone is.
    { account: "acct-edges", hour: "2028-01-31T23:00:00Z", model: "gpt-4o", key: "k1", team: "t1", credits: 100 },
    { account: "acct-edges", hour: "2028-02-01T00:00:00Z", model: "gpt-4o", key: "k1", team: "t1", credits: 200 },
    // 2028 is a leap year: 29 February's last hour is February's.
    { account: "acct-edges", hour: "2028-02-29T23:00:00Z", model: "claude", key: "k2", credits: 50 },
    { account: "acct-edges", hour: "2028-03-01T00:00:00Z", model: "claude", credits: 7 },
    // Another account's usage in the same hours is no part of acct-edges'.
    { account: "acct-other", hour: "2028-01-31T23:00:00Z", model: "gpt-4o", key: "k1", team: "t1", credits: 1000 },
    { account: "acct-other", hour: "2028-02-01T00:00:00Z", model: "gpt-4o", credits: 1000 },
  ]);
});

describe("GET /v1/accounts/{id}/usage", () => {
  it("buckets by UTC hour, day and month whatever the session's time zone: month ends and 29 February", async () => {
    const { rows } = await h.deps.database.pool.query("SHOW timezone");
    expect(rows[0].TimeZone).toBe("Pacific/Kiritimati");
    const months = await usage("/v1/accounts/acct-edges/usage?from=2028-01-01T00:00:00Z&to=2028-04-01T00:00:00Z&granularity=month");
    expect(credits(months)).toEqual([
      ["2028-01-01T00:00:00.000Z", 100],
      ["2028-02-01T00:00:00.000Z", 250],
      ["2028-03-01T00:00:00.000Z", 7],
    ]);
    expect(months).toMatchObject({ billing_account_id: "acct-edges", group_by: null, next_cursor: null });
    expect(months.rows[0]).not.toHaveProperty("group");
    const days = await usage("/v1/accounts/acct-edges/usage?from=2028-01-31T00:00:00Z&to=2028-03-02T00:00:00Z&granularity=day");
    expect(credits(days)).toEqual([
      ["2028-01-31T00:00:00.000Z", 100],
      ["2028-02-01T00:00:00.000Z", 200],
      ["2028-02-29T00:00:00.000Z", 50],
      ["2028-03-01T00:00:00.000Z", 7],
    ]);
    const hours = await usage("/v1/accounts/acct-edges/usage?from=2028-01-31T23:00:00Z&to=2028-02-01T01:00:00Z&granularity=hour");
    expect(credits(hours)).toEqual([
      ["2028-01-31T23:00:00.000Z", 100],
      ["2028-02-01T00:00:00.000Z", 200],
    ]);
    expect(hours.rows[0]).toMatchObject({ calls: 1, input_tokens: 10 });
  });

  it("reads [from, to): the hour at `to` is left out, the hour at `from` is in, and a clipped month is only its part", async () => {
    const page = await usage("/v1/accounts/acct-edges/usage?from=2028-02-01T00:00:00Z&to=2028-02-29T23:00:00Z&granularity=month");
    expect(credits(page)).toEqual([["2028-02-01T00:00:00.000Z", 200]]);
    const fromMidMonth = await usage("/v1/accounts/acct-edges/usage?from=2028-01-31T23:00:00Z&to=2028-02-01T00:00:00Z&granularity=month");
    expect(credits(fromMidMonth)).toEqual([["2028-01-01T00:00:00.000Z", 100]]);
  });

  it("groups by model, key and team; a call without one is grouped under null", async () => {
    const range = "from=2028-01-01T00:00:00Z&to=2028-04-01T00:00:00Z&granularity=month";
    const byModel = await usage(`/v1/accounts/acct-edges/usage?${range}&group_by=model`);
    expect(byModel.group_by).toBe("model");
    expect(credits(byModel)).toEqual([
      ["2028-01-01T00:00:00.000Z", "gpt-4o", 100],
      ["2028-02-01T00:00:00.000Z", "gpt-4o", 200],
      ["2028-02-01T00:00:00.000Z", "claude", 50],
      ["2028-03-01T00:00:00.000Z", "claude", 7],
    ]);
    expect(credits(await usage(`/v1/accounts/acct-edges/usage?${range}&group_by=key`))).toEqual([
      ["2028-01-01T00:00:00.000Z", "k1", 100],
      ["2028-02-01T00:00:00.000Z", "k1", 200],
      ["2028-02-01T00:00:00.000Z", "k2", 50],
      ["2028-03-01T00:00:00.000Z", null, 7],
    ]);
    expect(credits(await usage(`/v1/accounts/acct-edges/usage?${range}&group_by=team`))).toEqual([
      ["2028-01-01T00:00:00.000Z", "t1", 100],
      ["2028-02-01T00:00:00.000Z", "t1", 200],
      ["2028-02-01T00:00:00.000Z", null, 50],
      ["2028-03-01T00:00:00.000Z", null, 7],
    ]);
  });

  it("answers an account with no usage 200 with no rows, and an unknown account 404", async () => {
    const range = "from=2028-01-01T00:00:00Z&to=2028-02-01T00:00:00Z&granularity=day";
    expect(await usage(`/v1/accounts/acct-empty/usage?${range}`)).toMatchObject({ rows: [], next_cursor: null });
    const unknown = await h.admin("GET", `/v1/accounts/acct-never/usage?${range}`);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: { code: "account_not_found" } });
    expect((await h.app.inject({ method: "GET", url: `/v1/accounts/acct-edges/usage?${range}` })).statusCode).toBe(401);
  });

  it("reads an id sent in another Unicode spelling as its one NFC account", async () => {
    const nfc = "caf\u00e9-usage";
    await createAccount(nfc);
    await insertHourly([{ account: nfc, hour: "2028-01-05T10:00:00Z", credits: 3 }]);
    const page = await usage(`/v1/accounts/${encodeURIComponent("cafe\u0301-usage")}/usage?from=2028-01-05T00:00:00Z&to=2028-01-06T00:00:00Z&granularity=day`);
    expect(page.billing_account_id).toBe(nfc);
    expect(credits(page)).toEqual([["2028-01-05T00:00:00.000Z", 3]]);
  });

  it("pages with a cursor: every row once, in order, however the pages are cut (ties on credits included)", async () => {
    const models = ["m-a", "m-b", "m-c", "m-d", "m-e", "m-f", "m-g"];
    const rows: Hourly[] = [];
    for (let hour = 0; hour < 72; hour++) {
      for (const [index, model] of models.entries()) {
        // Credits repeat across models, so the order leans on the group to break ties.
        rows.push({ account: "acct-pages", hour: new Date(Date.UTC(2028, 4, 30) + hour * 3_600_000).toISOString(), model, key: `key-${index % 3}`, credits: (hour * index) % 5 });
      }
    }
    await insertHourly(rows);
    for (const shape of ["granularity=hour&group_by=model", "granularity=day&group_by=key", "granularity=hour", "granularity=month&group_by=model"]) {
      const base = `/v1/accounts/acct-pages/usage?from=2028-05-30T00:00:00Z&to=2028-06-02T00:00:00Z&${shape}`;
      const whole = await usage(`${base}&limit=1000`);
      expect(whole.next_cursor).toBeNull();
      // A page of one cuts at every row; larger pages at once in a period and across periods.
      for (const limit of whole.rows.length > 100 ? [7, 50] : [1, 7, 50]) {
        const paged: Row[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page: Page = await usage(`${base}&limit=${limit}${cursor === null ? "" : `&cursor=${cursor}`}`);
          expect(page.rows.length).toBeLessThanOrEqual(limit);
          paged.push(...page.rows);
          cursor = page.next_cursor;
          pages += 1;
        } while (cursor !== null && pages < 1000);
        expect(paged, `${shape}, limit ${limit}`).toEqual(whole.rows);
      }
      // Within a period, the most credits first, ties by group.
      const ordered = [...whole.rows].sort((a, b) => a.period_start.localeCompare(b.period_start) || b.charged_credits - a.charged_credits || String(a.group).localeCompare(String(b.group)));
      expect(whole.rows).toEqual(ordered);
    }
    // 3 days × 24 hours × 7 models: more than one page at the most rows an answer holds.
    const hourly = await usage("/v1/accounts/acct-pages/usage?from=2028-05-30T00:00:00Z&to=2028-06-02T00:00:00Z&granularity=hour&group_by=model&limit=1000");
    expect(hourly.rows).toHaveLength(504);
  });

  it("answers at most 1,000 rows a page", async () => {
    const rows: Hourly[] = [];
    for (let hour = 0; hour < 168; hour++) {
      for (let model = 0; model < 7; model++) rows.push({ account: "acct-pages", hour: new Date(Date.UTC(2028, 6, 1) + hour * 3_600_000).toISOString(), model: `n-${model}`, credits: 1 });
    }
    await insertHourly(rows);
    const base = "/v1/accounts/acct-pages/usage?from=2028-07-01T00:00:00Z&to=2028-07-08T00:00:00Z&granularity=hour&group_by=model";
    const first = await usage(`${base}&limit=1000`);
    expect(first.rows).toHaveLength(1000);
    const second = await usage(`${base}&limit=1000&cursor=${first.next_cursor}`);
    expect(second.rows).toHaveLength(176);
    expect(second.next_cursor).toBeNull();
    expect(credits(first).concat(credits(second))).toHaveLength(new Set(first.rows.concat(second.rows).map((row) => `${row.period_start} ${row.group}`)).size);
  });

  describe("a 400 naming the field", () => {
    const range = "from=2028-01-01T00:00:00Z&to=2028-02-01T00:00:00Z&granularity=day";
    const refusals: Array<[string, string, RegExp?]> = [
      ["from=2028-02-01T00:00:00Z&to=2028-01-01T00:00:00Z&granularity=day", "to", /after from/],
      ["from=2028-01-01T00:00:00Z&to=2028-01-01T00:00:00Z&granularity=day", "to", /after from/],
      ["from=2028-01-01T00:00:00Z&to=2028-02-01T00:00:00Z&granularity=week", "granularity"],
      ["from=2028-01-01T00:00:00Z&to=2028-02-01T00:00:00Z", "granularity"],
      ["to=2028-02-01T00:00:00Z&granularity=day", "from"],
      ["from=2028-01-01&to=2028-02-01T00:00:00Z&granularity=day", "from"],
      ["from=yesterday&to=2028-02-01T00:00:00Z&granularity=day", "from"],
      ["from=2028-02-30T00:00:00Z&to=2028-03-02T00:00:00Z&granularity=day", "from"],
      ["from=2027-02-29T00:00:00Z&to=2027-03-02T00:00:00Z&granularity=day", "from"],
      ["from=2028-01-01T00:00:00%2B02:00&to=2028-02-01T00:00:00Z&granularity=day", "from"],
      ["from=2028-01-01T00:00:00Z&to=2028-02-01T00:00:00-05:00&granularity=day", "to"],
      ["from=2028-01-01T00:30:00Z&to=2028-02-01T00:00:00Z&granularity=day", "from", /start of an hour/],
      ["from=2028-01-01T00:00:00.001Z&to=2028-02-01T00:00:00Z&granularity=day", "from", /start of an hour/],
      ["from=1969-12-31T00:00:00Z&to=1970-01-02T00:00:00Z&granularity=day", "from"],
      ["from=2028-01-01T00:00:00Z&to=2028-02-01T01:00:00Z&granularity=hour", "to", /31 days/],
      ["from=2028-01-01T00:00:00Z&to=2028-04-03T00:00:00Z&granularity=day", "to", /92 days/],
      ["from=2028-01-01T00:00:00Z&to=2029-01-02T00:00:00Z&granularity=month", "to", /366 days/],
      [`${range}&group_by=account`, "group_by"],
      [`${range}&group_by=provider`, "group_by"],
      [`${range}&limit=0`, "limit"],
      [`${range}&limit=1001`, "limit"],
      [`${range}&limit=ten`, "limit"],
      [`${range}&cursor=not-a-cursor`, "cursor"],
      [`${range}&cursor=${Buffer.from('{"q":"x","p":0,"c":"1","g":""}').toString("base64url")}`, "cursor", /another query/],
      [`${range}&cursor=%00`, "cursor"],
    ];
    it.each(refusals)("?%s → %s", async (query, field, message) => {
      const answer = await h.admin("GET", `/v1/accounts/acct-edges/usage?${query}`);
      expect(answer.statusCode, answer.body).toBe(400);
      const { error } = answer.json();
      expect(error.code).toBe("invalid_request");
      expect(error.message).toMatch(new RegExp(`^${field}: `));
      expect(error.issues[0].path).toBe(field);
      if (message) expect(error.message).toMatch(message);
    });

    it("a cursor of one query is refused by another (other group, range or account)", async () => {
      const base = "from=2028-05-30T00:00:00Z&to=2028-06-02T00:00:00Z&granularity=day&group_by=model&limit=1";
      const { next_cursor } = await usage(`/v1/accounts/acct-pages/usage?${base}`);
      expect(next_cursor).not.toBeNull();
      for (const other of [
        `/v1/accounts/acct-pages/usage?${base.replace("group_by=model", "group_by=key")}`,
        `/v1/accounts/acct-pages/usage?${base.replace("2028-06-02", "2028-06-01")}`,
        `/v1/accounts/acct-edges/usage?${base}`,
        `/v1/usage?${base}`,
      ]) {
        const answer = await h.admin("GET", `${other}&cursor=${next_cursor}`);
        expect(answer.statusCode, other).toBe(400);
        expect(answer.json().error.issues).toEqual([{ path: "cursor", message: expect.stringMatching(/another query/) }]);
      }
    });

    it.each([
      ["acct%01x", "a control character"],
      ["%20%20", "blank"],
      [`${"a".repeat(513)}`, "too long"],
    ])("an account id that is no id (%s: %s)", async (id) => {
      const answer = await h.admin("GET", `/v1/accounts/${id}/usage?${range}`);
      expect(answer.statusCode).toBe(400);
      expect(answer.json().error.issues[0].path).toBe("id");
    });
  });
});

describe("GET /v1/usage", () => {
  beforeAll(async () => {
    await insertHourly([
      { account: "top-a", hour: "2028-08-01T00:00:00Z", model: "x", credits: 500 },
      { account: "top-a", hour: "2028-08-20T05:00:00Z", model: "y", credits: 100 },
      { account: "top-b", hour: "2028-08-02T00:00:00Z", model: "x", credits: 900 },
      { account: "top-c", hour: "2028-08-31T23:00:00Z", model: "y", credits: 600 },
      { account: "top-d", hour: "2028-08-15T00:00:00Z", model: "x", credits: 600 },
      // September's: out of the range.
      { account: "top-d", hour: "2028-09-01T00:00:00Z", model: "x", credits: 5000 },
    ]);
  });
  const august = "from=2028-08-01T00:00:00Z&to=2028-09-01T00:00:00Z&granularity=month";

  it("ranks every account by charged credits (top-N with limit), ties by account, and pages on", async () => {
    const top2 = await usage(`/v1/usage?${august}&group_by=account&limit=2`);
    expect(top2).toMatchObject({ billing_account_id: null, group_by: "account" });
    expect(credits(top2)).toEqual([
      ["2028-08-01T00:00:00.000Z", "top-b", 900],
      ["2028-08-01T00:00:00.000Z", "top-a", 600],
    ]);
    const rest = await usage(`/v1/usage?${august}&group_by=account&limit=2&cursor=${top2.next_cursor}`);
    expect(credits(rest)).toEqual([
      ["2028-08-01T00:00:00.000Z", "top-c", 600],
      ["2028-08-01T00:00:00.000Z", "top-d", 600],
    ]);
    expect(rest.next_cursor).toBeNull();
  });

  it("sums every account by period, and by model across accounts", async () => {
    expect(credits(await usage(`/v1/usage?${august}`))).toEqual([["2028-08-01T00:00:00.000Z", 2700]]);
    expect(credits(await usage(`/v1/usage?${august}&group_by=model`))).toEqual([
      ["2028-08-01T00:00:00.000Z", "x", 2000],
      ["2028-08-01T00:00:00.000Z", "y", 700],
    ]);
    expect(credits(await usage("/v1/usage?from=2028-08-31T00:00:00Z&to=2028-09-02T00:00:00Z&granularity=day&group_by=account"))).toEqual([
      ["2028-08-31T00:00:00.000Z", "top-c", 600],
      ["2028-09-01T00:00:00.000Z", "top-d", 5000],
    ]);
  });

  it("refuses what the account route refuses, naming the field", async () => {
    const answer = await h.admin("GET", "/v1/usage?from=2028-08-01T00:00:00Z&to=2028-08-01T00:00:00Z&granularity=month&group_by=account");
    expect(answer.statusCode).toBe(400);
    expect(answer.json().error.issues[0].path).toBe("to");
    expect((await h.app.inject({ method: "GET", url: `/v1/usage?${august}` })).statusCode).toBe(401);
  });
});
