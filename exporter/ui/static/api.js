// The app's management API, same origin, as the signed-in person (App Service
// Authentication's cookie). Every change carries X-Exporter-Request, which the API requires
// and which a page on another site cannot send without a CORS preflight the app never grants.

export class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.problems = Array.isArray(body.problems) ? body.problems : [];
  }
}

export const segment = encodeURIComponent;

export async function api(method, path, {body, etag, query} = {}) {
  const headers = {Accept: "application/json"};
  if (method !== "GET") headers["X-Exporter-Request"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  const url = "/api/manage" + path + (query ? "?" + new URLSearchParams(query) : "");
  const response = await fetch(url, {method, headers, credentials: "same-origin", cache: "no-store",
                                     body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await response.text();
  let data = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = {error: `the app answered HTTP ${response.status} without JSON`};
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return {data, etag: response.headers.get("ETag")};
}

export function fileUrl(exportName, runId, file) {
  return `/api/manage/exports/${segment(exportName)}/runs/${segment(runId)}/${file}`;
}
