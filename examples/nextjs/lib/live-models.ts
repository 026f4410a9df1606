// Which model version is live, read from cvml's read-only view `cvml_app.live_models`
// (created by `cvml db upgrade` on Postgres). Server-side only: CVML_DB_URL holds a password.
// Give this server a role that can read the `cvml_app` schema and nothing else (cvml's README).
import "server-only";

import { Pool } from "pg";

export interface LiveModel {
  name: string;
  alias: string;
  version: number;
  kind: string;
}

export type LiveModels =
  | { status: "ok"; models: LiveModel[] }
  | { status: "not_configured" }
  | { status: "error"; message: string };

// One small pool per server process (kept across hot reloads in `next dev`).
const pools = globalThis as unknown as { cvmlPool?: Pool; cvmlPoolUrl?: string };

function pool(url: string): Pool {
  if (!pools.cvmlPool || pools.cvmlPoolUrl !== url) {
    void pools.cvmlPool?.end();
    pools.cvmlPool = new Pool({
      connectionString: url, max: 2, connectionTimeoutMillis: 5000, query_timeout: 5000, idleTimeoutMillis: 30000,
    });
    pools.cvmlPool.on("error", (error) => console.error("cvml_app pool:", error.message));
    pools.cvmlPoolUrl = url;
  }
  return pools.cvmlPool;
}

/** Every alias's live version; never throws (the page says what went wrong instead). */
export async function liveModels(): Promise<LiveModels> {
  const url = process.env.CVML_DB_URL?.trim();
  if (!url) return { status: "not_configured" };
  try {
    const { rows } = await pool(url).query<LiveModel>(
      "SELECT name, alias, version, kind FROM cvml_app.live_models ORDER BY name, alias",
    );
    return { status: "ok", models: rows.map((r) => ({ ...r, version: Number(r.version) })) };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    console.error("cvml_app.live_models:", e.message);
    if (e.code === "42P01" || e.code === "3F000") {
      return { status: "error", message: "the view cvml_app.live_models is missing: run `cvml db upgrade` on this database" };
    }
    if (e.code === "42501") {
      return { status: "error", message: "this role may not read cvml_app.live_models: GRANT SELECT on the cvml_app schema" };
    }
    // pg's messages name no password, but keep the page to the SQLSTATE or a generic line.
    return { status: "error", message: e.code ? `the database answered SQLSTATE ${e.code}` : "the database is unreachable" };
  }
}
