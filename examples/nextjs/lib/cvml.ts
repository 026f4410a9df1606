// How a Next.js server talks to `cvml serve`. Server-side only: the address and the API key
// come from CVML_BASE_URL / CVML_API_KEY at request time and never reach the browser
// (`server-only` makes importing this file from a client component a build error).
import "server-only";

import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { APICallError, streamText } from "ai";
import OpenAI from "openai";

import type { RewriteAnswer, RewriteInput } from "./types";

export type { RewriteAnswer, RewriteInput, Task } from "./types";

/** An error with the HTTP status to answer and OpenAI's envelope, as cvml itself sends it. */
export class CvmlError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }

  toResponse(): Response {
    const type = this.status >= 500 ? "server_error" : "invalid_request_error";
    return Response.json(
      { error: { message: this.message, type, param: this.param, code: this.code } },
      { status: this.status, headers: { "cache-control": "no-store" } },
    );
  }
}

/** Where cvml serve is, read per request (so `next build` bakes in nothing). */
export function cvmlSettings(): { baseURL: string; apiKey: string | undefined; model: string } {
  const raw = process.env.CVML_BASE_URL?.trim();
  if (!raw) {
    throw new CvmlError(500, "CVML_BASE_URL is not set: the address of `cvml serve`, e.g. http://127.0.0.1:8000/v1",
      "cvml_not_configured");
  }
  const base = raw.replace(/\/+$/, "");
  return {
    baseURL: base.endsWith("/v1") ? base : `${base}/v1`,
    apiKey: process.env.CVML_API_KEY || undefined,
    // The served id for chat: `default` for `cvml serve MODEL`, a variant name (`a`, `b`) under a split.
    model: process.env.CVML_MODEL || "default",
  };
}

/** The checked, grounded rewrite: `POST /v1/cv/rewrite`. Throws CvmlError with cvml's status. */
export async function rewrite(input: RewriteInput, signal?: AbortSignal): Promise<RewriteAnswer> {
  const { baseURL, apiKey } = cvmlSettings();
  let response: Response;
  try {
    response = await fetch(`${baseURL}/cv/rewrite`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
      body: JSON.stringify({
        text: input.text,
        task: input.task,
        job_description: input.jobDescription || undefined,
        user_id: input.userId,
      }),
      cache: "no-store",
      signal,
    });
  } catch (error) {
    throw unreachable(baseURL, error);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const e = body?.error ?? {};
    throw new CvmlError(response.status, e.message ?? `cvml answered ${response.status}`, e.code ?? null,
      e.param ?? null);
  }
  return body as RewriteAnswer;
}

// The prompts cvml's models are trained on (cvml/prompts.py): a streamed draft asks the way
// the checked rewrite does, so with greedy decoding the two usually agree.
const SYSTEM_PROMPT = "You improve CV text. Keep every fact; invent nothing.";

export function draftPrompt(input: RewriteInput): { system: string; user: string } {
  const source = input.text.trim();
  const user = {
    rewrite_bullet: `Rewrite this CV bullet to be stronger:\n${source}`,
    tailor_section: `Tailor this CV section to the job.\nSection:\n${source}\nJob: ${(input.jobDescription ?? "").trim()}`,
    summary: `Write a profile summary from:\n${source}`,
  }[input.task];
  return { system: SYSTEM_PROMPT, user };
}

/**
 * A draft streamed through the AI SDK (`streamText` on `/v1/chat/completions`) as plain text.
 * Unchecked: neither grounded nor passed through the safety checks; show it as a draft and
 * replace it with `rewrite()`'s answer.
 */
export async function streamDraft(input: RewriteInput, signal?: AbortSignal): Promise<Response> {
  const { baseURL, apiKey, model } = cvmlSettings();
  const cvml = createOpenAICompatible({ name: "cvml", baseURL, apiKey, includeUsage: true });
  const { system, user } = draftPrompt(input);
  const result = streamText({
    model: cvml.chatModel(model),
    system,
    prompt: user,
    temperature: 0,
    abortSignal: signal,
    providerOptions: input.userId ? { cvml: { user: input.userId } } : undefined,
  });
  async function* text() {
    for await (const part of result.fullStream) {
      if (part.type === "text-delta" && part.text) yield part.text;
      else if (part.type === "error") throw part.error;
    }
  }
  return textStream(text(), baseURL);
}

/**
 * The same draft through the plain `openai` npm client: no AI SDK, an API that changes less
 * between majors. Swap it for `streamDraft` where the SDK's features are not needed.
 */
export async function streamDraftWithOpenAI(input: RewriteInput, signal?: AbortSignal): Promise<Response> {
  const { baseURL, apiKey, model } = cvmlSettings();
  // The client insists on a key; cvml without --api-key ignores it.
  const client = new OpenAI({ baseURL, apiKey: apiKey ?? "no-key" });
  const { system, user } = draftPrompt(input);
  async function* text() {
    const stream = await client.chat.completions.create(
      {
        model,
        messages: [{ role: "system", content: system }, { role: "user", content: user }],
        temperature: 0,
        stream: true,
        user: input.userId,
      },
      { signal },
    );
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta?.content;
      if (delta) yield delta;
    }
  }
  return textStream(text(), baseURL);
}

/**
 * Plain text chunks as a streamed response. The first chunk is awaited before answering, so
 * an error from cvml before any text (401, 404, 429, 503, unreachable) becomes a JSON error
 * with cvml's status rather than an empty 200 stream.
 */
async function textStream(chunks: AsyncGenerator<string>, baseURL: string): Promise<Response> {
  let first: IteratorResult<string>;
  try {
    first = await chunks.next();
  } catch (error) {
    return asCvmlError(error, baseURL).toResponse();
  }
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.done) controller.close();
      else controller.enqueue(encoder.encode(first.value));
    },
    async pull(controller) {
      try {
        const next = await chunks.next();
        if (next.done) controller.close();
        else controller.enqueue(encoder.encode(next.value));
      } catch (error) {
        controller.error(asCvmlError(error, baseURL)); // mid-stream: the client sees the stream break
      }
    },
    async cancel() {
      await chunks.return(undefined); // the browser went away: stop reading, cvml aborts the generation
    },
  });
  return new Response(stream, {
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store, no-transform" },
  });
}

/** Any failure of a call to cvml as a CvmlError carrying cvml's own status and message. */
export function asCvmlError(error: unknown, baseURL: string): CvmlError {
  if (error instanceof CvmlError) return error;
  if (APICallError.isInstance(error) && error.statusCode) {
    const envelope = safeJson(error.responseBody)?.error ?? {};
    return new CvmlError(error.statusCode, envelope.message ?? error.message, envelope.code ?? null,
      envelope.param ?? null);
  }
  if (error instanceof OpenAI.APIError && error.status) {
    const envelope = (error.error ?? {}) as { message?: string; code?: string; param?: string };
    return new CvmlError(error.status, envelope.message ?? error.message, envelope.code ?? null,
      envelope.param ?? null);
  }
  return unreachable(baseURL, error);
}

function unreachable(baseURL: string, error: unknown): CvmlError {
  // The address and the cause go to the server's log; the browser only learns that cvml is down.
  console.error(`cvml serve at ${new URL(baseURL).host} is unreachable:`, error);
  return new CvmlError(502, "cvml serve is unreachable; see the web server's log", "cvml_unreachable");
}

function safeJson(text: string | undefined): { error?: { message?: string; code?: string; param?: string } } | null {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}
