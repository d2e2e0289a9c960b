// "Get code": the request the page would send next, as Python SDK, JS SDK and curl code.
// Each runs unchanged against this server, and against Gemini once the base URL line is
// removed (the key comes from GEMINI_API_KEY, as both SDKs read it).

const GEMINI = "https://generativelanguage.googleapis.com";

function pyString(text) {
  // A JSON string literal is a valid Python literal too (JSON.stringify never writes \/).
  return JSON.stringify(text);
}

function pyValue(value, indent) {
  const pad = " ".repeat(indent + 4);
  const end = " ".repeat(indent);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "None";
  if (typeof value === "string") return pyString(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => pad + pyValue(v, indent + 4)).join(",\n")},\n${end}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  const body = entries.map(([k, v]) => `${pad}${pyString(k)}: ${pyValue(v, indent + 4)}`);
  return `{\n${body.join(",\n")},\n${end}}`;
}

export function pythonCode(request, baseUrl) {
  const args = Object.entries(request)
    .filter(([k]) => k !== "stream")
    .map(([k, v]) => `    ${k}=${pyValue(v, 4)},`);
  return [
    "from google import genai",
    "",
    `client = genai.Client(http_options={"base_url": ${pyString(baseUrl)}})`,
    "interaction = client.interactions.create(",
    ...args,
    ")",
    "for step in interaction.steps:",
    '    if step.type == "model_output":',
    "        print(\"\".join(part.text for part in step.content or [] if part.type == \"text\"))",
    '    elif step.type == "function_call":',
    "        print(step.name, step.arguments)",
    "",
  ].join("\n");
}

function jsValue(value, indent) {
  const text = JSON.stringify(value, null, 2);
  const pad = " ".repeat(indent);
  return text
    .split("\n")
    .map((line, n) => (n ? pad + line : line))
    .join("\n")
    .replace(/^(\s*)"([A-Za-z_$][\w$]*)":/gm, "$1$2:");
}

export function jsCode(request, baseUrl) {
  const body = Object.fromEntries(Object.entries(request).filter(([k]) => k !== "stream"));
  return [
    'import { GoogleGenAI } from "@google/genai";',
    "",
    `const ai = new GoogleGenAI({ httpOptions: { baseUrl: ${JSON.stringify(baseUrl)} } });`,
    `const interaction = await ai.interactions.create(${jsValue(body, 0)});`,
    "for (const step of interaction.steps) {",
    '  if (step.type === "model_output") console.log((step.content ?? []).map((p) => p.text ?? "").join(""));',
    '  else if (step.type === "function_call") console.log(step.name, step.arguments);',
    "}",
    "",
  ].join("\n");
}

function shellQuote(text) {
  return "'" + text.replaceAll("'", "'\\''") + "'";
}

export function curlCode(request, baseUrl) {
  const body = Object.fromEntries(Object.entries(request).filter(([k]) => k !== "stream"));
  return [
    `# Against Gemini: BASE_URL=${GEMINI}`,
    `BASE_URL=${shellQuote(baseUrl)}`,
    'curl -X POST "$BASE_URL/v1beta/interactions" \\',
    '  -H "x-goog-api-key: $GEMINI_API_KEY" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuote(JSON.stringify(body, null, 2))}`,
    "",
  ].join("\n");
}
