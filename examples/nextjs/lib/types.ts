// The shapes the server and the page share (no secrets here: the page imports this file).

export type Task = "rewrite_bullet" | "tailor_section" | "summary";

export interface RewriteInput {
  text: string;
  jobDescription?: string;
  task: Task;
  /** Stable id of the signed-in user: keeps them on one A/B arm. */
  userId?: string;
}

interface Check {
  flagged: boolean;
}

/** A fact the output states that the text and job description do not support. */
export interface Claim {
  kind: string; // number, percent, money, year, duration, employer, school or degree
  text: string;
  span: [number, number];
  normalized: string;
}

/** What `/v1/cv/rewrite` answers (see cvml's README, "Grounded by construction"). */
export interface RewriteAnswer {
  output: string;
  model: string;
  version: number | null;
  variant: string;
  request_id: string;
  finish_reason: string;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  checks: {
    fabrication: Check & { claims: Claim[]; n_claims: number };
    pii_leak: Check & { types: string[]; n_leaks: number };
    protected_attributes: Check & { categories: string[]; n: number };
    abusive: Check & { categories: string[]; n: number };
    injection: Check & { where: string[]; categories: string[]; n: number };
  };
  guard: {
    action: "passed" | "retried" | "flagged" | "blocked";
    attempts: number;
    reasons: string[];
    grounding: "off" | "numbers" | "strict";
  };
}
