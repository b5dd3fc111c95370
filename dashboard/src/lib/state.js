/**
 * Everything the monitoring page shows, in one place, without the DOM.
 *
 * The realtime layer feeds it (a snapshot, then live events); the page
 * reads it when it renders.  The rule that keeps the page honest: a
 * snapshot *replaces* metrics, series, health and feed (after any reconnect
 * the page is rebuilt from the server's picture, never patched from what it
 * remembered); live events only ever move forward from there.
 */

import { buildCards, previousValues, trendSample } from "./cards.js";
import { Conversation, FeedModel } from "./feed.js";
import { HealthModel } from "./health.js";
import { ActivityWindow } from "./series.js";
import { TrendTracker } from "./trend.js";

export class DashboardState {
  constructor({ feedLimit = 100, trend = {} } = {}) {
    this.metrics = null;
    /** Local time (ms) of the last metrics applied, or null. */
    this.metricsAt = null;
    this.trends = new TrendTracker(trend);
    this.activity = new ActivityWindow();
    this.health = new HealthModel();
    this.feed = new FeedModel({ limit: feedLimit });
    /** The conversation panel's model, when one is open. */
    this.conversation = null;
    /** Bumped whenever the metrics change (cards re-render on change only). */
    this.metricsVersion = 0;
  }

  /** Replace the page's state with a subscribe snapshot ``{metrics, health, feed}``. */
  applySnapshot(snapshot, nowMs) {
    this.applyMetrics(snapshot?.metrics ?? null, nowMs);
    this.health.reset(snapshot?.health ?? []);
    this.feed.reset(snapshot?.feed ?? []);
    if (this.conversation) {
      for (const event of snapshot?.feed ?? []) this.conversation.add(event);
    }
  }

  /** A ``metrics:update`` (or the snapshot's metrics). */
  applyMetrics(metrics, nowMs) {
    if (!metrics || typeof metrics !== "object") {
      this.metrics = null;
      this.metricsAt = null;
      this.metricsVersion += 1;
      return;
    }
    this.metrics = metrics;
    this.metricsAt = nowMs;
    this.trends.record(nowMs, trendSample(metrics));
    if (Array.isArray(metrics.series)) this.activity.replace(metrics.series, nowMs / 1000);
    this.metricsVersion += 1;
  }

  /** A ``message:processed``. */
  applyMessage(event) {
    const shown = this.feed.add(event);
    const inConversation = this.conversation ? this.conversation.add(event) : false;
    return shown || inConversation;
  }

  /** A ``health:changed``. */
  applyHealth(change) {
    return this.health.apply(change);
  }

  /** Open the conversation panel's model for ``user`` (history arrives later). */
  openConversation(user) {
    this.conversation = new Conversation(user);
    for (const event of this.feed.items) this.conversation.add(event);
    return this.conversation;
  }

  closeConversation() {
    this.conversation = null;
  }

  /** The cards' view models at ``nowMs``. */
  cards(nowMs) {
    return buildCards(this.metrics, previousValues(this.metrics, this.trends, nowMs));
  }

  /** Once a second: roll the activity window forward by the local clock. */
  tick(nowMs) {
    return this.activity.advance(nowMs / 1000);
  }

  /** Forget everything (logout). */
  clear() {
    this.metrics = null;
    this.metricsAt = null;
    this.trends.clear();
    this.activity.clear();
    this.health.clear();
    this.feed.clear();
    this.conversation = null;
    this.metricsVersion += 1;
  }
}
