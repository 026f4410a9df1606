// POST /api/rewrite/openai {text, job_description?} → the same streamed draft as
// /api/rewrite with stream: true, through the plain `openai` npm client instead of the AI SDK.
import { CvmlError, streamDraftWithOpenAI } from "@/lib/cvml";
import { readRewriteRequest } from "@/lib/request";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function POST(request: Request): Promise<Response> {
  try {
    return await streamDraftWithOpenAI(await readRewriteRequest(request), request.signal);
  } catch (error) {
    if (error instanceof CvmlError) return error.toResponse();
    throw error;
  }
}
