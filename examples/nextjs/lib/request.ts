// The body the page posts to /api/rewrite, checked before anything reaches cvml.
import "server-only";

import { CvmlError, type RewriteInput } from "./cvml";

export interface RewriteRequest extends RewriteInput {
  stream: boolean;
}

/** `{text, job_description?, stream?}` → the input of a rewrite; a 400 (CvmlError) otherwise. */
export async function readRewriteRequest(request: Request): Promise<RewriteRequest> {
  const body = await request.json().catch(() => null);
  if (body === null || typeof body !== "object") throw new CvmlError(400, "the body must be a JSON object");
  const { text, job_description: job, stream } = body as Record<string, unknown>;
  if (typeof text !== "string" || !text.trim()) throw new CvmlError(400, "text is required", null, "text");
  if (job !== undefined && job !== null && typeof job !== "string") {
    throw new CvmlError(400, "job_description must be a string", null, "job_description");
  }
  const jobDescription = typeof job === "string" && job.trim() ? job : undefined;
  // A job description turns the bullet into a section tailored to it.
  return { text, jobDescription, task: jobDescription ? "tailor_section" : "rewrite_bullet", stream: stream === true };
}
