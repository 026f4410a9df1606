// POST /api/rewrite {text, job_description?}        → cvml's checked, grounded answer (JSON)
// POST /api/rewrite {text, job_description?, stream: true} → a draft streamed as plain text
//   through the AI SDK's streamText on /v1/chat/completions (unchecked: show it as a draft).
import { CvmlError, rewrite, streamDraft } from "@/lib/cvml";
import { readRewriteRequest } from "@/lib/request";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function POST(request: Request): Promise<Response> {
  try {
    const input = await readRewriteRequest(request);
    if (input.stream) return await streamDraft(input, request.signal);
    return Response.json(await rewrite(input, request.signal), { headers: { "cache-control": "no-store" } });
  } catch (error) {
    if (error instanceof CvmlError) return error.toResponse();
    throw error;
  }
}
