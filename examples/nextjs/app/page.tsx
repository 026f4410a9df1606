// The page: the live model version (read here, on the server) and the rewrite form.
import { liveModels, type LiveModels } from "@/lib/live-models";

import { RewriteForm } from "./rewrite-form";

export const dynamic = "force-dynamic"; // read the live version per request, never at build time

export default async function Page() {
  const live = await liveModels();
  return (
    <main>
      <h1>Rewrite a CV bullet</h1>
      <LiveVersion live={live} />
      <RewriteForm />
    </main>
  );
}

function LiveVersion({ live }: { live: LiveModels }) {
  let body;
  if (live.status === "not_configured") {
    body = <>No database configured (CVML_DB_URL is not set): the live model version is not shown.</>;
  } else if (live.status === "error") {
    body = <>The live model version could not be read: {live.message}.</>;
  } else if (live.models.length === 0) {
    body = <>No model is promoted yet (`cvml models promote NAME@VERSION --alias prod`).</>;
  } else {
    body = (
      <>
        Live:{" "}
        {live.models.map((m, i) => (
          <span key={`${m.name}/${m.alias}`}>
            {i > 0 && ", "}
            <code>{`${m.name}@${m.version}`}</code> as <code>{`${m.name}@${m.alias}`}</code> ({m.kind})
          </span>
        ))}
      </>
    );
  }
  return (
    <p className="live" data-testid="live-model" data-status={live.status}>
      {body}
    </p>
  );
}
