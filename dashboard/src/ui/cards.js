/**
 * The metric cards: built once (stable elements, stable ``data-testid``s),
 * then only their text changes.
 */

import { h, setAttr, setText } from "./dom.js";

export function createCards(root) {
  const cards = new Map();
  for (const article of root.querySelectorAll("[data-card]")) {
    const id = article.dataset.card;
    const label = h("h3", { class: "card-label", id: `card-${id}-label` });
    const value = h("p", { class: "card-value", "data-testid": `card-${id}-value` });
    const parts = h("dl", { class: "card-parts", hidden: true });
    const detail = h("p", { class: "card-detail" });
    const trend = h("p", { class: "card-trend", "data-testid": `card-${id}-trend`, "data-trend": "unknown" });
    const arrow = h("span", { class: "trend-arrow", "aria-hidden": "true" });
    const trendText = h("span", { class: "trend-text" });
    trend.append(arrow, trendText);
    article.replaceChildren(label, value, parts, detail, trend);
    cards.set(id, { article, label, value, parts, detail, trend, arrow, trendText, partsKey: "" });
  }

  /** Show the view models from ``DashboardState.cards()``. */
  function render(models) {
    for (const model of models) {
      const card = cards.get(model.id);
      if (!card) continue;
      setText(card.label, model.label);
      if (model.parts) {
        card.value.hidden = true;
        card.parts.hidden = false;
        const key = model.parts.map((p) => `${p.label}=${p.value}`).join("|");
        if (key !== card.partsKey) {
          card.partsKey = key;
          card.parts.replaceChildren(
            ...model.parts.flatMap((p) => [h("dt", { text: p.label }), h("dd", { text: p.value, "data-testid": `card-latency-${p.label}` })]),
          );
        }
      } else {
        card.value.hidden = false;
        card.parts.hidden = true;
        setText(card.value, model.value);
      }
      setText(card.detail, model.detail);
      setText(card.arrow, model.trend.arrow);
      setText(card.trendText, model.trend.text);
      setAttr(card.trend, "data-trend", model.trend.direction);
      setAttr(card.trend, "data-sentiment", model.trend.sentiment);
    }
  }

  return { render };
}
