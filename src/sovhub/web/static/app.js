// sovhub web assistant: progressive enhancement of the server-rendered chat. Without this file
// every form still works (the server answers in full and redirects). Text from the model is only
// ever inserted as text nodes while streaming; the final HTML comes from the server, sanitised.
"use strict";

(function () {
  const chat = document.getElementById("chat");
  if (!chat) return;
  const t = (key) => chat.dataset["t" + key] || "";
  const list = document.getElementById("messages");
  const statusLine = document.getElementById("chat-status");
  const composer = document.getElementById("composer");
  const stopButton = document.getElementById("stop");
  const sendButton = document.getElementById("send");
  let controller = null;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(text) { statusLine.textContent = text; }

  function messageItem(role) {
    const item = el("li", { class: "message " + role });
    item.append(el("h2", { class: "who" }, role === "user" ? t("You") : t("Assistant")));
    const bubble = el("div", { class: role === "user" ? "bubble" : "bubble md", dir: "auto" });
    item.append(bubble);
    list.append(item);
    return { item, bubble };
  }

  function hidden(name, value) { return el("input", { type: "hidden", name, value }); }

  function regenerateForm() {
    const form = el("form", { method: "post", action: "/c/" + chat.dataset.conversation + "/regenerate", "data-stream": "" });
    form.append(hidden("csrf_token", chat.dataset.csrf));
    form.append(el("button", { type: "submit", class: "button secondary" }, t("Regenerate")));
    return form;
  }

  function addActions(item) {
    const actions = el("div", { class: "actions" });
    actions.append(el("button", { type: "button", class: "button secondary", "data-copy": "" }, t("Copy")));
    document.querySelectorAll(".messages form[action$='/regenerate']").forEach((f) => f.remove());
    actions.append(regenerateForm());
    item.append(actions);
  }

  function addSources(item, citations) {
    if (!citations || !citations.length) return;
    const section = el("section", { class: "sources", "aria-label": t("Sources") });
    section.append(el("h3", {}, t("Sources")));
    const ol = el("ol");
    for (const c of citations) {
      const label = "[" + c.n + "] " + c.title + (c.page !== null && c.page !== undefined ? ", " + t("Page") + " " + c.page : "");
      const li = el("li");
      li.append(el("a", { href: c.url }, label));
      ol.append(li);
    }
    section.append(ol);
    item.append(section);
  }

  function whyBlocked(categories) {
    let names = {};
    try { names = JSON.parse(chat.dataset.whyBlocked || "{}"); } catch (e) { names = {}; }
    const reasons = (categories || []).filter((c) => names[c]).map((c) => names[c]);
    return t("Why").replace("%(why)s", reasons.length ? reasons.join("; ") : chat.dataset.whyOther || "");
  }

  function addBlock(item, block) {
    const box = el("div", { class: "block-box", role: "note" });
    box.append(el("h3", {}, t("Blocked")));
    box.append(el("p", { class: "why" }, whyBlocked(block.categories)));
    if (block.decision_id) {
      box.append(el("p", {}, t("Mistakes")));
      const form = el("form", { method: "post", action: "/appeals", class: "stack appeal" });
      const id = "appeal-new-" + Date.now();
      form.append(hidden("csrf_token", chat.dataset.csrf), hidden("decision_id", block.decision_id),
        hidden("conversation_id", chat.dataset.conversation));
      form.append(el("label", { for: id }, t("AppealReason")));
      form.append(el("textarea", { id, name: "reason", rows: "2" }));
      form.append(el("button", { type: "submit", class: "button" }, t("AppealSend")));
      box.append(form);
    }
    item.append(box);
  }

  function setBusy(busy) {
    list.setAttribute("aria-busy", busy ? "true" : "false");
    stopButton.hidden = !busy;
    sendButton.disabled = busy;
  }

  function conversationStarted(data) {
    chat.dataset.conversation = data.id;
    composer.action = "/c/" + data.id + "/messages";
    history.replaceState(null, "", data.url);
  }

  async function* sseEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", data = "";
        for (const line of raw.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        yield { name, data: data ? JSON.parse(data) : {} };
      }
    }
  }

  async function stream(form, question) {
    if (controller) return;
    const welcome = document.getElementById("welcome");
    if (welcome) welcome.remove();
    const body = new URLSearchParams(new FormData(form));
    if (form !== composer && composer.elements.model) body.set("model", composer.elements.model.value);
    if (question !== null) messageItem("user").bubble.append(el("p", { class: "plain", dir: "auto" }, question));
    const answer = messageItem("assistant");
    let received = "";
    controller = new AbortController();
    setBusy(true);
    say(t("Thinking"));
    try {
      const response = await fetch(form.action, {
        method: "POST", body, signal: controller.signal,
        headers: { Accept: "text/event-stream", "X-CSRF-Token": chat.dataset.csrf },
      });
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      for await (const event of sseEvents(response)) {
        const data = event.data;
        if (event.name === "conversation") conversationStarted(data);
        else if (event.name === "meta") answer.citations = data.citations;
        else if (event.name === "delta") { received += data.text; answer.bubble.append(document.createTextNode(data.text)); }
        else if (event.name === "reset") { received = ""; answer.bubble.textContent = ""; say(t("Retrying")); }
        else if (event.name === "done") {
          answer.bubble.innerHTML = data.html;  // sanitised on the server (markdown-it without HTML, then nh3)
          if (data.citations) answer.citations = data.citations;  // only the sources the answer used
          if (data.finish_reason === "content_filter") answer.item.append(el("p", { class: "meta" }, t("Filtered")));
          if (data.block) addBlock(answer.item, data.block);
          addSources(answer.item, answer.citations);
          if (received) addActions(answer.item);
          say(t("Done"));
        } else if (event.name === "error") {
          if (data.block) { answer.bubble.remove(); addBlock(answer.item, data.block); say(t("Blocked")); }
          else { answer.item.remove(); say(t("Error")); }
        }
      }
    } catch (error) {
      if (error.name === "AbortError") {
        answer.item.append(el("p", { class: "meta" }, t("Stopped")));
        if (received) addActions(answer.item);
        say(t("Stopped"));
      } else {
        if (!received) answer.item.remove();
        say(t("Error"));
      }
    } finally {
      controller = null;
      setBusy(false);
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-stream")) return;
    event.preventDefault();
    if (form === composer) {
      const text = composer.elements.content.value.trim();
      if (!text) return;
      stream(form, text);
      composer.elements.content.value = "";
    } else {
      const item = form.closest("li.message");
      if (item) item.remove();
      stream(form, null);
    }
  });

  composer.elements.content.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter breaks the line; never while an input method is composing (Japanese).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  stopButton.addEventListener("click", () => { if (controller) controller.abort(); });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const bubble = button.closest("li.message").querySelector(".bubble");
    const text = bubble ? bubble.innerText : "";
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      const area = el("textarea", { "aria-hidden": "true" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = t("Copied");
    setTimeout(() => { button.textContent = t("Copy"); }, 2000);
  });
})();
