// A stand-in for a widget model in a static page: get/set/on/off/save_changes over plain state.

export class StaticModel {
  constructor(state) {
    this.state = { ...state };
    this.handlers = new Map();
  }

  get(name) { return this.state[name]; }

  set(name, value) {
    const old = this.state[name];
    this.state[name] = value;
    if (old !== value) this.emit(`change:${name}`, value);
  }

  save_changes() {}

  on(events, callback) {
    for (const event of events.split(/\s+/).filter(Boolean)) {
      if (!this.handlers.has(event)) this.handlers.set(event, new Set());
      this.handlers.get(event).add(callback);
    }
  }

  off(events, callback) {
    for (const event of (events || "").split(/\s+/).filter(Boolean)) this.handlers.get(event)?.delete(callback);
  }

  emit(event, value) {
    for (const callback of [...(this.handlers.get(event) || [])]) callback(value);
  }
}

/** Keep `name` equal on both models (what traitlets.link does in the kernel). */
export function linkModels(a, b, name) {
  a.on(`change:${name}`, () => b.set(name, a.get(name)));
  b.on(`change:${name}`, () => a.set(name, b.get(name)));
}
