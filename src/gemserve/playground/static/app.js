// The playground: a chat on gemserve's own Interactions API, streamed over SSE.
// No framework, no build step; every node is built with createElement/textContent.

import {
  ApiError,
  VERSION,
  apiKey,
  call,
  forgetSessionKey,
  listModels,
  partType,
  setSessionKey,
  streamInteraction,
  uploadFile,
} from "./api.js";
import { curlCode, jsCode, pythonCode } from "./code.js";
import { codeBlock, renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const REQUIRE_KEYS = document.body.dataset.requireKeys === "true";

const state = {
  key: null,
  conversation: null, // {ids: [interaction ids, oldest first], title, updated}
  attachments: [], // {id, file, status, uri, mimeType, type, previewUrl, progress node}
  pendingCalls: [], // function_call steps waiting for results
  running: null, // {controller, id, cancelled}
  lastRequest: null,
};

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function announce(text) {
  $("status").textContent = text;
}

function showError(text) {
  const node = el("div", { class: "error", role: "alert", text });
  $("transcript").append(node);
  node.scrollIntoView({ block: "end" });
}

// ----- keys -----------------------------------------------------------------------------------

async function ensureKey() {
  state.key = apiKey(REQUIRE_KEYS);
  if (state.key) {
    try {
      await loadModels();
      return;
    } catch (error) {
      if (!(error instanceof ApiError) || ![400, 401, 403].includes(error.status)) throw error;
      forgetSessionKey();
    }
  }
  await askForKey();
}

function askForKey(message = "") {
  const dialog = $("key-dialog");
  $("key-error").textContent = message;
  return new Promise((resolve) => {
    $("key-form").onsubmit = async (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      state.key = key;
      try {
        await loadModels();
      } catch (error) {
        $("key-error").textContent = error.message;
        return;
      }
      setSessionKey(key);
      $("key-input").value = "";
      dialog.close();
      resolve();
    };
    dialog.showModal();
  });
}

// ----- settings -------------------------------------------------------------------------------

async function loadModels() {
  const models = await listModels(state.key);
  const select = $("model");
  const previous = select.value;
  select.replaceChildren();
  const served = el("optgroup", { label: "Served models" });
  const aliases = el("optgroup", { label: "Aliases" });
  for (const model of models) {
    const name = model.name.replace(/^models\//, "");
    const alias = name !== model.baseModelId;
    const label = alias ? `${name} → ${model.baseModelId}` : `${name} (${model.displayName})`;
    (alias ? aliases : served).append(el("option", { value: name, text: label }));
  }
  select.append(served, aliases);
  const names = models.map((m) => m.name.replace(/^models\//, ""));
  select.value = names.includes(previous)
    ? previous
    : names.includes("gemini-3-flash-preview")
      ? "gemini-3-flash-preview"
      : names[0];
}

function number(id) {
  const raw = $(id).value.trim();
  return raw === "" ? undefined : Number(raw);
}

function parseJsonField(id, what) {
  const raw = $(id).value.trim();
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw new Error(`${what}: not valid JSON (${error.message})`);
  }
}

// The request body for ``input``, from the settings panel and the conversation.
function buildRequest(input) {
  const request = { model: $("model").value, input };
  const last = state.conversation?.ids.at(-1);
  if (last) request.previous_interaction_id = last;
  const system = $("system").value.trim();
  if (system) request.system_instruction = system;
  const config = {};
  const temperature = number("temperature");
  if (temperature !== undefined) config.temperature = temperature;
  const topP = number("top-p");
  if (topP !== undefined) config.top_p = topP;
  const maxTokens = number("max-tokens");
  if (maxTokens !== undefined) config.max_output_tokens = maxTokens;
  const stops = $("stop").value.split("\n").filter((s) => s !== "");
  if (stops.length) config.stop_sequences = stops;
  if ($("thinking").value) config.thinking_level = $("thinking").value;
  if ($("json-mode").checked) {
    const format = { type: "text", mime_type: "application/json" };
    const schema = parseJsonField("schema", "JSON schema");
    if (schema !== undefined) format.schema = schema;
    request.response_format = format;
  }
  const tools = parseJsonField("tools", "Function declarations");
  if (tools !== undefined) {
    const list = Array.isArray(tools) ? tools : [tools];
    request.tools = list.map((tool) => ({ type: "function", ...tool }));
    if ($("tool-choice").value) config.tool_choice = $("tool-choice").value;
  }
  if (Object.keys(config).length) request.generation_config = config;
  return request;
}

function syncJsonMode() {
  $("schema-field").hidden = !$("json-mode").checked;
}

// ----- attachments ----------------------------------------------------------------------------

let attachmentCounter = 0;

function addFiles(files) {
  for (const file of files) {
    const item = {
      id: ++attachmentCounter,
      file,
      status: "uploading",
      mimeType: file.type || "application/octet-stream",
    };
    item.type = partType(item.mimeType);
    const progress = el("progress", { max: "1", value: "0", "aria-label": `Uploading ${file.name}` });
    const remove = el("button", {
      type: "button",
      class: "icon",
      "aria-label": `Remove ${file.name}`,
      text: "×",
      onclick: () => removeAttachment(item),
    });
    const chip = el("li", { class: "attachment", dataset: { state: "uploading" } });
    if (item.type === "image") {
      item.previewUrl = URL.createObjectURL(file);
      chip.append(el("img", { src: item.previewUrl, alt: `Preview of ${file.name}` }));
    }
    chip.append(el("span", { class: "name", text: file.name }), progress, remove);
    item.chip = chip;
    item.progress = progress;
    $("attachments").append(chip);
    state.attachments.push(item);
    item.done = uploadFile(state.key, file, (fraction) => {
      progress.value = String(fraction);
    }).then(
      (resource) => {
        item.status = "ready";
        item.uri = resource.uri;
        if (resource.mimeType) item.mimeType = resource.mimeType;
        chip.dataset.state = "ready";
        chip.dataset.uri = resource.uri;
        progress.value = "1";
        announce(`${file.name} uploaded`);
      },
      (error) => {
        item.status = "failed";
        chip.dataset.state = "failed";
        chip.append(el("span", { class: "error-text", text: error.message }));
        announce(`${file.name}: ${error.message}`);
      },
    );
  }
}

function removeAttachment(item) {
  state.attachments = state.attachments.filter((a) => a !== item);
  item.chip.remove();
  if (item.previewUrl) URL.revokeObjectURL(item.previewUrl);
}

function setUpDropZone() {
  const zone = $("composer");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer?.files?.length) addFiles(event.dataTransfer.files);
  });
  $("file-input").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = "";
  });
}

// ----- rendering ------------------------------------------------------------------------------

function userBubble(input) {
  const bubble = el("div", { class: "turn user" }, el("h2", { class: "who", text: "You" }));
  const parts = typeof input === "string" ? [{ type: "text", text: input }] : input;
  for (const part of parts) bubble.append(...renderInputPart(part));
  return bubble;
}

function renderInputPart(part) {
  if (part.type === "user_input") return (part.content ?? []).flatMap(renderInputPart);
  if (part.type === "text") return [el("p", { class: "user-text", text: part.text })];
  if (part.type === "function_result") {
    const result = typeof part.result === "string" ? part.result : JSON.stringify(part.result);
    return [el("p", { class: "tool-result", text: `Result of ${part.name ?? part.call_id}: ${result}` })];
  }
  const label = `${part.type}: ${part.uri ?? part.mime_type ?? ""}`;
  const chip = el("span", { class: "part-chip", text: label });
  if (part.preview) {
    return [el("img", { class: "part-image", src: part.preview, alt: "Attached image" }), chip];
  }
  return [chip];
}

class AssistantTurn {
  constructor() {
    this.node = el("article", {
      class: "turn model",
      "aria-live": "polite",
      "aria-busy": "true",
      "aria-label": "Model answer",
    });
    this.node.append(el("h2", { class: "who", text: "Model" }));
    this.stepsNode = el("div", { class: "steps" });
    this.usageNode = el("p", { class: "usage", "aria-label": "Usage" });
    this.node.append(this.stepsNode, this.usageNode);
    this.steps = new Map();
    this.started = performance.now();
    this.firstToken = null;
    this.renderQueued = false;
  }

  step(index, step) {
    let entry = this.steps.get(index);
    if (entry) return entry;
    entry = { step: { ...step }, text: "", args: "" };
    if (step.type === "thought") {
      entry.summaryLabel = el("span", { text: "Thought" });
      entry.body = el("div", { class: "thought-text markdown" });
      entry.node = el(
        "details",
        { class: "thought" },
        el("summary", {}, entry.summaryLabel),
        entry.body,
      );
    } else if (step.type === "function_call") {
      entry.args = step.arguments && Object.keys(step.arguments).length ? JSON.stringify(step.arguments) : "";
      entry.argsNode = el("pre", { class: "call-args", text: entry.args });
      entry.node = el(
        "div",
        { class: "function-call" },
        el("p", { class: "call-name", text: `Function call: ${step.name}` }),
        entry.argsNode,
      );
    } else {
      entry.body = el("div", { class: "markdown answer" });
      entry.node = entry.body;
    }
    this.steps.set(index, entry);
    this.stepsNode.append(entry.node);
    return entry;
  }

  delta(index, delta) {
    const entry = this.steps.get(index) ?? this.step(index, { type: "model_output" });
    if (this.firstToken === null && (delta.type === "text" || delta.type === "thought_summary" || delta.type === "arguments_delta")) {
      this.firstToken = performance.now();
    }
    if (delta.type === "text") {
      entry.text += delta.text ?? "";
      this.queueRender(entry);
    } else if (delta.type === "thought_summary") {
      entry.text += delta.content?.text ?? "";
      this.queueRender(entry);
    } else if (delta.type === "arguments_delta") {
      entry.args += delta.arguments ?? "";
      entry.argsNode.textContent = entry.args;
    }
  }

  queueRender(entry) {
    entry.dirty = true;
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      for (const e of this.steps.values()) {
        if (e.dirty) {
          e.dirty = false;
          e.body.replaceChildren(renderMarkdown(e.text));
          e.body.dataset.raw = e.text;
        }
      }
      this.node.scrollIntoView({ block: "end" });
    });
  }

  renderFinal() {
    for (const e of this.steps.values()) {
      if (e.step.type !== "function_call") {
        e.body.replaceChildren(renderMarkdown(e.text));
        e.body.dataset.raw = e.text;
      }
    }
  }

  // A stored interaction's output steps (GET), rendered whole.
  fromSteps(steps) {
    steps.forEach((step, index) => {
      const entry = this.step(index, step);
      if (step.type === "thought") {
        entry.text = (step.summary ?? []).map((p) => p.text ?? "").join("");
      } else if (step.type === "model_output") {
        entry.text = (step.content ?? []).map((p) => p.text ?? "").join("");
      }
    });
    this.renderFinal();
  }

  finish(interaction, timing = true) {
    this.node.setAttribute("aria-busy", "false");
    this.renderFinal();
    const usage = interaction?.usage ?? {};
    for (const entry of this.steps.values()) {
      if (entry.step.type === "thought") {
        entry.summaryLabel.textContent = `Thought (${usage.total_thought_tokens ?? 0} tokens)`;
      }
    }
    const figures = [
      ["input", usage.total_input_tokens ?? 0],
      ["output", usage.total_output_tokens ?? 0],
      ["thought", usage.total_thought_tokens ?? 0],
      ["cached", usage.total_cached_tokens ?? 0],
    ].map(([name, value]) => `${name} ${value}`);
    if (timing && this.firstToken !== null) {
      const now = performance.now();
      const ttft = this.firstToken - this.started;
      const generated = (usage.total_output_tokens ?? 0) + (usage.total_thought_tokens ?? 0);
      const seconds = (now - this.firstToken) / 1000;
      figures.push(`first token ${Math.round(ttft)} ms`);
      if (seconds > 0 && generated > 1) figures.push(`${(generated / seconds).toFixed(1)} tok/s`);
    }
    if (interaction?.status && interaction.status !== "completed") {
      figures.push(`status ${interaction.status}`);
    }
    this.usageNode.textContent = figures.join(" · ");
    this.node.dataset.status = interaction?.status ?? "unknown";
  }
}

// ----- conversations --------------------------------------------------------------------------

// The list comes from the server (GET /interactions, gemserve's own: the last turn of each of
// this key's conversations); a conversation is the chain of previous_interaction_id behind it.
const MAX_TURNS = 200;

let conversationItems = [];

async function refreshConversations() {
  try {
    const page = await call(state.key, "GET", `/${VERSION}/interactions?pageSize=50`);
    conversationItems = page.interactions ?? [];
  } catch (error) {
    announce(`Conversations: ${error.message}`);
  }
  renderConversationList();
}

function renderConversationList() {
  const list = $("conversations");
  list.replaceChildren();
  const current = state.conversation?.ids.at(-1);
  for (const item of conversationItems) {
    const title = item.input_preview || "(no text)";
    const open = el(
      "button",
      {
        type: "button",
        class: "open",
        "aria-current": item.id === current ? "true" : null,
        title,
        onclick: () => openConversation(item.id),
      },
      el("span", { class: "title", text: title }),
      el("span", { class: "when", text: new Date(item.updated).toLocaleString() }),
    );
    const remove = el("button", {
      type: "button",
      class: "icon",
      "aria-label": `Delete conversation “${title}”`,
      text: "×",
      onclick: () => deleteConversation(item.id),
    });
    list.append(el("li", { dataset: { id: item.id } }, open, remove));
  }
}

function newConversation() {
  if (state.running) return;
  state.conversation = null;
  state.pendingCalls = [];
  $("transcript").replaceChildren();
  renderConversationList();
  $("prompt").focus();
}

// The interactions of the conversation ending at ``lastId``, oldest first.
async function loadChain(lastId) {
  const chain = [];
  let id = lastId;
  while (id && chain.length < MAX_TURNS) {
    const interaction = await call(state.key, "GET", `/${VERSION}/interactions/${encodeURIComponent(id)}`);
    chain.unshift(interaction);
    id = interaction.previous_interaction_id;
  }
  return chain;
}

async function openConversation(lastId) {
  if (state.running) return;
  const transcript = $("transcript");
  announce("Loading the conversation…");
  let chain;
  try {
    chain = await loadChain(lastId);
  } catch (error) {
    showError(`Opening the conversation: ${error.message}`);
    return;
  }
  transcript.replaceChildren();
  state.conversation = { ids: chain.map((interaction) => interaction.id) };
  state.pendingCalls = [];
  renderConversationList();
  for (const interaction of chain) {
    const steps = interaction.steps ?? [];
    const isInput = (s) => s.type === "user_input" || s.type === "function_result";
    const inputs = steps.filter(isInput);
    const outputs = steps.filter((s) => !isInput(s));
    if (inputs.length) transcript.append(userBubble(inputs));
    const turn = new AssistantTurn();
    turn.node.dataset.id = interaction.id;
    transcript.append(turn.node);
    turn.fromSteps(outputs);
    turn.finish(interaction, false);
    if (interaction.status === "requires_action" && interaction === chain.at(-1)) {
      state.pendingCalls = outputs.filter((s) => s.type === "function_call");
      offerResults(turn);
    }
  }
  announce("Conversation loaded");
}

// Deletes every turn of the conversation (DELETE each interaction of the chain).
async function deleteConversation(lastId) {
  if (state.running) return;
  let ids;
  try {
    ids = state.conversation?.ids.at(-1) === lastId
      ? [...state.conversation.ids]
      : (await loadChain(lastId)).map((interaction) => interaction.id);
  } catch (error) {
    showError(`Deleting the conversation: ${error.message}`);
    return;
  }
  for (const id of ids.reverse()) {
    try {
      await call(state.key, "DELETE", `/${VERSION}/interactions/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) {
        showError(`Deleting ${id}: ${error.message}`);
        break;
      }
    }
  }
  if (state.conversation && ids.includes(state.conversation.ids.at(-1))) newConversation();
  await refreshConversations();
  announce("Conversation deleted");
}

// ----- a turn ---------------------------------------------------------------------------------

function offerResults(turn) {
  const form = el("form", { class: "results" });
  state.pendingCalls.forEach((callStep, n) => {
    const id = `result-${callStep.id}-${n}`;
    form.append(
      el("label", { for: id, text: `Result of ${callStep.name}` }),
      el("textarea", { id, rows: "2", class: "result-input", placeholder: '{"temperature": 21} or text' }),
    );
  });
  form.append(el("button", { type: "submit", text: "Send result" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const inputs = [...form.querySelectorAll("textarea")];
    const results = state.pendingCalls.map((callStep, n) => {
      const raw = inputs[n].value.trim();
      let result = raw;
      try {
        result = JSON.parse(raw);
      } catch {
        // plain text
      }
      return { type: "function_result", call_id: callStep.id, name: callStep.name, result };
    });
    form.remove();
    state.pendingCalls = [];
    send(results);
  });
  turn.node.append(form);
  form.querySelector("textarea")?.focus();
}

async function submitPrompt(event) {
  event.preventDefault();
  if (state.running) return;
  const text = $("prompt").value.trim();
  if (!text && !state.attachments.length) return;
  const waiting = state.attachments.filter((a) => a.status === "uploading");
  if (waiting.length) {
    announce("Waiting for uploads to finish…");
    await Promise.all(waiting.map((a) => a.done));
  }
  const ready = state.attachments.filter((a) => a.status === "ready");
  let input = text;
  if (ready.length) {
    input = text ? [{ type: "text", text }] : [];
    for (const a of ready) input.push({ type: a.type, uri: a.uri, mime_type: a.mimeType });
  }
  const previews = new Map(ready.map((a) => [a.uri, a.previewUrl]));
  const sent = await send(input, previews);
  if (sent) {
    $("prompt").value = "";
    for (const a of state.attachments) a.chip.remove();
    state.attachments = [];
  }
}

async function send(input, previews = new Map()) {
  let request;
  try {
    request = buildRequest(input);
  } catch (error) {
    announce(error.message);
    showError(error.message);
    return false;
  }
  state.lastRequest = request;
  const transcript = $("transcript");
  const shown = typeof input === "string" ? input : input.map((p) => ({ ...p, preview: previews.get(p.uri) }));
  transcript.append(userBubble(shown));
  const turn = new AssistantTurn();
  transcript.append(turn.node);
  turn.node.scrollIntoView({ block: "end" });
  const controller = new AbortController();
  state.running = { controller, id: null, cancelled: false };
  setRunning(true);
  let final = null;
  try {
    await streamInteraction(
      state.key,
      request,
      (event) => {
        switch (event.event_type) {
          case "interaction.created":
            state.running.id = event.interaction?.id ?? null;
            turn.node.dataset.id = state.running.id ?? "";
            break;
          case "step.start":
            turn.step(event.index, event.step ?? {});
            break;
          case "step.delta":
            turn.delta(event.index, event.delta ?? {});
            break;
          case "interaction.completed":
            final = event.interaction;
            break;
          case "error":
            showError(event.error?.message ?? "The interaction failed.");
            final = { status: "failed" };
            break;
          default:
            break;
        }
      },
      controller.signal,
    );
  } catch (error) {
    if (error.name === "AbortError" || state.running.cancelled) {
      final = { ...(final ?? {}), status: "cancelled" };
    } else {
      showError(error.message);
      final = final ?? { status: "failed" };
    }
  }
  const id = state.running.id;
  state.running = null;
  setRunning(false);
  turn.finish(final ?? { status: "cancelled" });
  if (id) {
    state.conversation = state.conversation ?? { ids: [] };
    state.conversation.ids.push(id);
    await refreshConversations();
  }
  if (final?.status === "requires_action") {
    state.pendingCalls = [...turn.steps.values()]
      .filter((e) => e.step.type === "function_call")
      .map((e) => ({ ...e.step, arguments: safeJson(e.args) }));
    offerResults(turn);
  }
  announce(`Answer ${final?.status ?? "ended"}`);
  return Boolean(id); // refused before it began (a 4xx): the prompt stays for another try
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

function setRunning(running) {
  $("send").disabled = running;
  $("cancel").disabled = !running;
  $("composer").setAttribute("aria-busy", String(running));
}

// Cancel: POST /interactions/{id}/cancel (the stream then ends with the interaction
// cancelled, its partial output kept); before the id is known, hang up, which cancels a
// foreground stream server-side too.
async function cancelRunning() {
  const running = state.running;
  if (!running) return;
  running.cancelled = true;
  announce("Cancelling…");
  if (running.id) {
    try {
      await call(state.key, "POST", `/${VERSION}/interactions/${encodeURIComponent(running.id)}/cancel`);
      return;
    } catch {
      // already finished, or unreachable: hang up below
    }
  }
  running.controller.abort();
}

// ----- get code -------------------------------------------------------------------------------

const CODE_TABS = [
  ["python", "Python", pythonCode, "python"],
  ["js", "JavaScript", jsCode, "js"],
  ["curl", "curl", curlCode, "sh"],
];

function currentRequest() {
  const text = $("prompt").value.trim();
  const ready = state.attachments.filter((a) => a.status === "ready");
  if (text || ready.length) {
    let input = text;
    if (ready.length) {
      input = text ? [{ type: "text", text }] : [];
      for (const a of ready) input.push({ type: a.type, uri: a.uri, mime_type: a.mimeType });
    }
    return buildRequest(input);
  }
  if (state.lastRequest) return state.lastRequest;
  return buildRequest("Hello!");
}

function showCode(which = "python") {
  let request;
  try {
    request = currentRequest();
  } catch (error) {
    showError(error.message);
    return;
  }
  const base = window.location.origin;
  for (const [name, , make, lang] of CODE_TABS) {
    const tab = $(`tab-${name}`);
    const panel = $(`panel-${name}`);
    const selected = name === which;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    panel.hidden = !selected;
    const code = make(request, base);
    panel.dataset.code = code;
    panel.replaceChildren(codeBlock(code, lang));
  }
  const dialog = $("code-dialog");
  if (!dialog.open) dialog.showModal();
  $(`tab-${which}`).focus();
}

function setUpCodeDialog() {
  $("get-code").addEventListener("click", () => showCode());
  CODE_TABS.forEach(([name], n) => {
    const tab = $(`tab-${name}`);
    tab.addEventListener("click", () => showCode(name));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = CODE_TABS[(n + step + CODE_TABS.length) % CODE_TABS.length][0];
      showCode(next);
    });
  });
  $("copy-code").addEventListener("click", async () => {
    const panel = document.querySelector(".code-panel:not([hidden])");
    try {
      await navigator.clipboard.writeText(panel.dataset.code);
      $("copy-status").textContent = "Copied";
    } catch {
      $("copy-status").textContent = "Copy failed: select the code and copy it by hand";
    }
  });
  $("close-code").addEventListener("click", () => $("code-dialog").close());
}

// ----- start ----------------------------------------------------------------------------------

async function main() {
  $("composer").addEventListener("submit", submitPrompt);
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("cancel").addEventListener("click", cancelRunning);
  $("new-chat").addEventListener("click", newConversation);
  $("json-mode").addEventListener("change", syncJsonMode);
  syncJsonMode();
  setUpDropZone();
  setUpCodeDialog();
  setRunning(false);
  try {
    await ensureKey();
    await refreshConversations();
    announce("Ready");
    document.body.dataset.ready = "true";
    performance.mark("playground-ready"); // bench/bench_playground.py: time to interactive
  } catch (error) {
    showError(`Cannot reach the server: ${error.message}`);
  }
}

main();
