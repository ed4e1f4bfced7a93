// Netlify Function behind /api/feedback: a person's true labels for a classified text, forwarded to the
// predict Lambda's /feedback route (stored there as SageMaker ground truth). Same configuration, signing
// and error shapes as /api/predict (predict.mjs).
import { createHandler } from "./predict.mjs";

export default function handler(request, context) {
  return createHandler({ route: "feedback" })(request, context);
}

export const config = { path: "/api/feedback" };
