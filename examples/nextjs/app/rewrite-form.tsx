"use client";
// The form: the draft streams in from /api/rewrite (stream: true) while the checked rewrite is
// computed by /api/rewrite; when the checked one arrives it is the answer, with its verdict.

import { useRef, useState, type FormEvent } from "react";

import type { RewriteAnswer } from "@/lib/types";

type Via = "ai-sdk" | "openai";
type DraftState = "idle" | "streaming" | "done" | "failed";

async function errorMessage(response: Response): Promise<string> {
  const body = await response.json().catch(() => null);
  return body?.error?.message ?? `the server answered ${response.status}`;
}

export function RewriteForm() {
  const [text, setText] = useState("");
  const [job, setJob] = useState("");
  const [via, setVia] = useState<Via>("ai-sdk");
  const [draft, setDraft] = useState("");
  const [draftState, setDraftState] = useState<DraftState>("idle");
  const [answer, setAnswer] = useState<RewriteAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const inFlight = useRef<AbortController | null>(null);

  async function streamDraft(body: string, signal: AbortSignal) {
    const response = await fetch(via === "openai" ? "/api/rewrite/openai" : "/api/rewrite", {
      method: "POST", headers: { "content-type": "application/json" }, body, signal,
    });
    if (!response.ok || !response.body) throw new Error(await errorMessage(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      setDraft((d) => d + value);
    }
  }

  async function checkedRewrite(body: string, signal: AbortSignal) {
    const response = await fetch("/api/rewrite", {
      method: "POST", headers: { "content-type": "application/json" }, body, signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    setAnswer((await response.json()) as RewriteAnswer);
  }

  async function onSubmit(event: FormEvent) {
    event.preventDefault();
    inFlight.current?.abort();
    const controller = new AbortController();
    inFlight.current = controller;
    setDraft(""); setAnswer(null); setError(null); setBusy(true); setDraftState("streaming");
    const payload = { text, job_description: job.trim() ? job : undefined };
    const drafting = streamDraft(JSON.stringify({ ...payload, stream: true }), controller.signal).then(
      () => setDraftState("done"),
      (e: Error) => { if (!controller.signal.aborted) { setDraftState("failed"); setError(`Draft: ${e.message}`); } },
    );
    const checking = checkedRewrite(JSON.stringify(payload), controller.signal).catch((e: Error) => {
      if (!controller.signal.aborted) setError(`Checked rewrite: ${e.message}`);
    });
    await Promise.all([drafting, checking]);
    if (inFlight.current === controller) setBusy(false);
  }

  // A draft the checks did not let through is not left on screen.
  const withheld = answer !== null && (answer.guard.action === "blocked" || answer.guard.action === "flagged");

  return (
    <form onSubmit={onSubmit}>
      <label htmlFor="text">CV bullet</label>
      <textarea id="text" name="text" rows={3} value={text} onChange={(e) => setText(e.target.value)}
        placeholder="Led a team of five engineers to ship the billing system" required />
      <label htmlFor="job">Job description (optional)</label>
      <textarea id="job" name="job" rows={3} value={job} onChange={(e) => setJob(e.target.value)} />
      <button type="submit" disabled={busy || !text.trim()}>{busy ? "Rewriting…" : "Rewrite"}</button>
      <label style={{ display: "inline", fontWeight: 400, marginLeft: "1rem" }}>
        Stream the draft with
        <select value={via} onChange={(e) => setVia(e.target.value as Via)} aria-label="client">
          <option value="ai-sdk">the AI SDK (streamText)</option>
          <option value="openai">the openai client</option>
        </select>
      </label>

      {error && <p className="error" role="alert" data-testid="error">{error}</p>}

      {draftState !== "idle" && (
        <section className="panel" data-testid="draft" data-state={draftState}>
          <h2>Draft {draftState === "streaming" ? "(streaming…)" : ""} — not yet checked</h2>
          <div className="draft">{withheld ? "Withheld: the checks did not pass it." : draft}</div>
        </section>
      )}

      {answer && <Verdict answer={answer} />}
    </form>
  );
}

function Verdict({ answer }: { answer: RewriteAnswer }) {
  const { guard, checks } = answer;
  const rows: [string, boolean, string][] = [
    ["Fabrication", checks.fabrication.flagged,
      checks.fabrication.claims.map((c) => `${c.kind} “${c.text}”`).join(", ") || "no unsupported claim"],
    ["Personal data", checks.pii_leak.flagged, checks.pii_leak.types.join(", ") || "no leak"],
    ["Protected attributes", checks.protected_attributes.flagged, checks.protected_attributes.categories.join(", ") || "none added"],
    ["Abusive language", checks.abusive.flagged, checks.abusive.categories.join(", ") || "none"],
    ["Prompt injection in the inputs", checks.injection.flagged,
      checks.injection.flagged ? `${checks.injection.categories.join(", ")} (cut from the prompt)` : "none"],
  ];
  return (
    <section className="panel" data-testid="verdict" data-action={guard.action}>
      <h2>
        Checked rewrite <span className={`badge ${guard.action}`} data-testid="guard-action">{guard.action}</span>
      </h2>
      <div className="output" data-testid="checked-output">{answer.output}</div>
      {guard.action === "blocked" && <p className="bad">No rewrite passed the checks: your text is kept as it was.</p>}
      <ul className="checks">
        {rows.map(([name, flagged, detail]) => (
          <li key={name} className={flagged ? "bad" : "ok"} data-testid={`check-${name}`}>
            {flagged ? "✗" : "✓"} {name}: {detail}
          </li>
        ))}
      </ul>
      <p className="meta">
        {guard.attempts} attempt{guard.attempts === 1 ? "" : "s"}
        {guard.reasons.length > 0 && ` (failed: ${guard.reasons.join(", ")})`} · grounding {guard.grounding} · answered
        by <code data-testid="answered-by">{answer.version === null ? answer.model : `${answer.model}@${answer.version}`}</code>{" "}
        (variant {answer.variant}) · request {answer.request_id}
      </p>
    </section>
  );
}
