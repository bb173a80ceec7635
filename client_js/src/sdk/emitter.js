// A minimal event emitter that works the same in browsers and Node.

export class Emitter {
  constructor () {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map()
  }

  /**
   * Call `fn` on every `name` event; returns a function that removes it.
   * @param {string} name
   * @param {Function} fn
   */
  on (name, fn) {
    let set = this._handlers.get(name)
    if (!set) this._handlers.set(name, (set = new Set()))
    set.add(fn)
    return () => this.off(name, fn)
  }

  /** @param {string} name @param {Function} fn */
  off (name, fn) {
    this._handlers.get(name)?.delete(fn)
  }

  /**
   * Resolve with the arguments of the next `name` event for which `test` holds.
   * @param {string} name
   * @param {(...args: any[]) => boolean} [test]
   * @param {number} [timeoutMs]
   */
  once (name, test = () => true, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { off(); reject(new Error(`no ${name} event within ${timeoutMs} ms`)) }, timeoutMs)
      const off = this.on(name, (/** @type {any[]} */ ...args) => {
        if (!test(...args)) return
        clearTimeout(timer)
        off()
        resolve(args[0])
      })
    })
  }

  /** @param {string} name @param {...any} args */
  emit (name, ...args) {
    for (const fn of [...(this._handlers.get(name) || [])]) {
      try { fn(...args) } catch (err) { console.error(`parley: a ${name} handler failed`, err) }
    }
  }
}
