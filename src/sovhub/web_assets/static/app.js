// sovhub web assistant: progressive enhancement of the server-rendered pages. Without this file
// every form still works (the server answers in full and redirects). Text from the model is only
// ever inserted as text nodes while streaming; the final HTML comes from the server, sanitised.
"use strict";

(function () {
  document.documentElement.classList.add("js");

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function copyText(text) {
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
  }

  const chat = document.getElementById("chat");
  if (!chat) return;
  const t = (key) => chat.dataset["t" + key] || "";
  const list = document.getElementById("messages");
  const statusLine = document.getElementById("chat-status");
  const composer = document.getElementById("composer");
  const stopButton = document.getElementById("stop");
  const sendButton = document.getElementById("send");
  let controller = null;

  function say(text) { statusLine.textContent = text; }

  // A copy button on every code block of an answer (the highlighting itself is the server's).
  function decorateCode(root) {
    root.querySelectorAll(".md pre").forEach((pre) => {
      if (pre.parentElement.classList.contains("code-block")) return;
      const wrap = el("div", { class: "code-block" });
      pre.replaceWith(wrap);
      wrap.append(pre);
      wrap.append(el("button", { type: "button", class: "button secondary copy-code", "data-copy-code": "" }, t("CodeCopy")));
    });
  }
  decorateCode(document);

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
    const form = el("form", { method: "post", action: "/c/" + chat.dataset.conversation + "/regenerate", "data-stream": "", "data-regenerate": "" });
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

  // The page follows a new chat at once: address, heading, tab title and the conversation list.
  function conversationStarted(data) {
    chat.dataset.conversation = data.id;
    composer.action = "/c/" + data.id + "/messages";
    // A document attached now belongs to this chat, not to a new one.
    const attachForm = document.getElementById("attach-form");
    if (attachForm) attachForm.action = "/c/" + data.id + "/attachments";
    history.replaceState(null, "", data.url);
    const heading = document.getElementById("chat-title");
    if (heading && data.title) heading.textContent = data.title;
    if (data.title) document.title = data.title + " · " + document.title.split(" · ").pop();
    // The count was the server's; its plural forms are not here, so a stale one goes.
    for (const stale of ["no-conversations", "conversation-count"]) {
      const node = document.getElementById(stale);
      if (node) node.remove();
    }
    const sidebarList = document.getElementById("conversation-list");
    if (sidebarList) {
      sidebarList.querySelectorAll("a[aria-current]").forEach((a) => a.removeAttribute("aria-current"));
      const li = el("li", { id: "conversation-" + data.id });
      const link = el("a", { href: data.url, "aria-current": "page" });
      link.append(el("span", { class: "title", dir: "auto" }, data.title || ""));
      li.append(link);
      sidebarList.prepend(li);
    }
  }

  // A new chat whose first answer failed was removed by the server: the page is a new chat again.
  function conversationDiscarded() {
    const id = chat.dataset.conversation;
    const entry = document.getElementById("conversation-" + id);
    if (entry) entry.remove();
    chat.dataset.conversation = "";
    composer.action = "/c";
    const attachForm = document.getElementById("attach-form");
    if (attachForm) attachForm.action = "/c/attachments";
    history.replaceState(null, "", "/");
  }

  // `note`: what the person is told instead of "Error" (their quota, in their language).
  function offerRetry(item, question, discarded, note) {
    const box = el("div", { class: "retry-box", role: "alert" });
    box.append(el("p", { class: "error" }, note || t("Error")));
    const button = el("button", { type: "button", class: "button" }, t("Retry"));
    button.addEventListener("click", () => {
      item.remove();
      if (discarded) {
        const asked = list.lastElementChild;
        if (asked && asked.classList.contains("user")) asked.remove();
        stream(composer, question);
      } else {
        stream(regenerateForm(), null);
      }
    });
    box.append(button);
    item.append(box);
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
    if (question !== null && form === composer) body.set("content", question);
    if (form !== composer && composer.elements.model) body.set("model", composer.elements.model.value);
    const asked = question !== null ? question : null;
    if (asked !== null) messageItem("user").bubble.append(el("p", { class: "plain", dir: "auto" }, asked));
    const answer = messageItem("assistant");
    answer.bubble.setAttribute("aria-busy", "true");
    let received = "";
    let reloadAfter = form.hasAttribute("data-regenerate");
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
          answer.bubble.removeAttribute("aria-busy");
          answer.bubble.innerHTML = data.html;  // sanitised on the server (markdown-it without HTML, then nh3)
          decorateCode(answer.item);
          if (data.citations) answer.citations = data.citations;  // only the sources the answer used
          if (data.finish_reason === "content_filter") answer.item.append(el("p", { class: "meta" }, t("Filtered")));
          if (data.block) addBlock(answer.item, data.block);
          addSources(answer.item, answer.citations);
          if (received) addActions(answer.item);
          say(t("Done"));
        } else if (event.name === "error") {
          reloadAfter = false;
          answer.bubble.remove();
          if (data.block) { addBlock(answer.item, data.block); say(t("Blocked")); }
          else {
            if (data.discarded) conversationDiscarded();
            const quota = data.message && data.code === "rate_limit_exceeded" ? data.message : null;
            offerRetry(answer.item, asked !== null ? asked : "", Boolean(data.discarded), quota);
            say(quota || t("Error"));
          }
        }
      }
    } catch (error) {
      reloadAfter = false;
      if (error.name === "AbortError") {
        answer.item.append(el("p", { class: "meta" }, t("Stopped")));
        if (received) addActions(answer.item);
        say(t("Stopped"));
      } else if (!received) {
        answer.bubble.remove();
        offerRetry(answer.item, asked !== null ? asked : "", false);
        say(t("Error"));
      } else {
        say(t("Error"));
      }
    } finally {
      controller = null;
      setBusy(false);
    }
    // A regenerated answer keeps the earlier ones: the server's page shows them all.
    if (reloadAfter) location.reload();
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
    } else if (form.hasAttribute("data-edit")) {
      // The edited question replaces itself and everything after it.
      const item = form.closest("li.message");
      const text = form.elements.content.value.trim();
      if (!text || !item) return;
      while (item.nextElementSibling) item.nextElementSibling.remove();
      item.querySelector(".bubble").replaceChildren(el("p", { class: "plain", dir: "auto" }, text));
      form.closest("details").open = false;
      stream(form, null);
    } else {
      const item = form.closest("li.message");
      if (item && item.classList.contains("assistant")) item.remove();
      const retry = form.closest(".retry-box");
      if (retry) retry.remove();
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
    const codeButton = event.target.closest("[data-copy-code]");
    if (codeButton) {
      const pre = codeButton.parentElement.querySelector("pre");
      await copyText(pre ? pre.innerText : "");
      codeButton.textContent = t("Copied");
      setTimeout(() => { codeButton.textContent = t("CodeCopy"); }, 2000);
      return;
    }
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const bubble = button.closest("li.message").querySelector(".bubble");
    await copyText(bubble ? bubble.innerText : "");
    button.textContent = t("Copied");
    setTimeout(() => { button.textContent = t("Copy"); }, 2000);
  });
})();
