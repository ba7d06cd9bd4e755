// QR codes drawn on the phone itself (the ride code, which must refresh with no server
// round trip): ISO/IEC 18004 model 2 in numeric, alphanumeric or byte mode (one segment,
// the mode the Python `qrcode` package picks for such a text), error correction M, the
// smallest version that fits, and the mask of lowest penalty scored as `qrcode` scores
// it: a text gives the symbol wallet/qr.py draws, module for module.
// tapstackQr.matrix(text[, mask]) -> rows of booleans (true = dark, no quiet zone);
// tapstackQr.svg(text, label) -> an <svg> element with a 4-module quiet zone.
(function (global) {
  "use strict";

  const ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  // Error correction M, versions 1 to 40: [EC codewords a block, blocks of group 1, their
  // data codewords, blocks of group 2, their data codewords] (ISO/IEC 18004, table 9).
  const BLOCKS = [
    [10, 1, 16, 0, 0], [16, 1, 28, 0, 0], [26, 1, 44, 0, 0], [18, 2, 32, 0, 0], [24, 2, 43, 0, 0],
    [16, 4, 27, 0, 0], [18, 4, 31, 0, 0], [22, 2, 38, 2, 39], [22, 3, 36, 2, 37], [26, 4, 43, 1, 44],
    [30, 1, 50, 4, 51], [22, 6, 36, 2, 37], [22, 8, 37, 1, 38], [24, 4, 40, 5, 41], [24, 5, 41, 5, 42],
    [28, 7, 45, 3, 46], [28, 10, 46, 1, 47], [26, 9, 43, 4, 44], [26, 3, 44, 11, 45], [26, 3, 41, 13, 42],
    [26, 17, 42, 0, 0], [28, 17, 46, 0, 0], [28, 4, 47, 14, 48], [28, 6, 45, 14, 46], [28, 8, 47, 13, 48],
    [28, 19, 46, 4, 47], [28, 22, 45, 3, 46], [28, 3, 45, 23, 46], [28, 21, 45, 7, 46], [28, 19, 47, 10, 48],
    [28, 2, 46, 29, 47], [28, 10, 46, 23, 47], [28, 14, 46, 21, 47], [28, 14, 46, 23, 47], [28, 12, 47, 26, 48],
    [28, 6, 47, 34, 48], [28, 29, 46, 14, 47], [28, 13, 46, 32, 47], [28, 40, 47, 7, 48], [28, 18, 47, 31, 48],
  ];
  const EC_M = 0; // the format information's two bits for level M

  // GF(256) with the polynomial x^8 + x^4 + x^3 + x^2 + 1.
  const EXP = new Uint8Array(512), LOG = new Uint8Array(256);
  for (let i = 0, x = 1; i < 255; i++, x = (x << 1) ^ (x & 0x80 ? 0x11d : 0)) { EXP[i] = x; LOG[x] = i; }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
  const mul = (a, b) => (a && b ? EXP[LOG[a] + LOG[b]] : 0);

  function generator(degree) {
    let g = [1];
    for (let i = 0; i < degree; i++) {
      const next = new Array(g.length + 1).fill(0);
      g.forEach((c, j) => { next[j] ^= c; next[j + 1] ^= mul(c, EXP[i]); });
      g = next;
    }
    return g;
  }

  function remainder(data, degree) {
    const g = generator(degree), rest = data.concat(new Array(degree).fill(0));
    for (let i = 0; i < data.length; i++) {
      const c = rest[i];
      if (c) for (let j = 0; j < g.length; j++) rest[i + j] ^= mul(g[j], c);
    }
    return rest.slice(data.length);
  }

  // -- the bit stream ----------------------------------------------------------------------
  function segment(text) {
    if (/^[0-9]+$/.test(text)) return { mode: 1, count: text.length, bits: numericBits(text), widths: [10, 12, 14] };
    if ([...text].every((c) => ALNUM.includes(c))) return { mode: 2, count: text.length, bits: alnumBits(text), widths: [9, 11, 13] };
    const bytes = new TextEncoder().encode(text), bits = [];
    bytes.forEach((b) => push(bits, b, 8));
    return { mode: 4, count: bytes.length, bits, widths: [8, 16, 16] };
  }
  function numericBits(text) {
    const bits = [];
    for (let i = 0; i < text.length; i += 3) {
      const group = text.slice(i, i + 3);
      push(bits, Number(group), [0, 4, 7, 10][group.length]);
    }
    return bits;
  }
  function alnumBits(text) {
    const bits = [];
    for (let i = 0; i < text.length; i += 2) {
      const a = ALNUM.indexOf(text[i]);
      if (i + 1 < text.length) push(bits, a * 45 + ALNUM.indexOf(text[i + 1]), 11);
      else push(bits, a, 6);
    }
    return bits;
  }
  function push(bits, value, width) { for (let i = width - 1; i >= 0; i--) bits.push((value >>> i) & 1); }
  const dataCodewords = (v) => { const [, n1, d1, n2, d2] = BLOCKS[v - 1]; return n1 * d1 + n2 * d2; };

  function codewords(text) {
    const seg = segment(text);
    for (let v = 1; v <= 40; v++) {
      const width = seg.widths[v < 10 ? 0 : v < 27 ? 1 : 2], capacity = dataCodewords(v) * 8;
      if (seg.count >= 2 ** width || 4 + width + seg.bits.length > capacity) continue;
      const bits = [];
      push(bits, seg.mode, 4); push(bits, seg.count, width); bits.push(...seg.bits);
      push(bits, 0, Math.min(4, capacity - bits.length));
      push(bits, 0, (8 - (bits.length % 8)) % 8);
      const data = [];
      for (let i = 0; i < bits.length; i += 8) data.push(parseInt(bits.slice(i, i + 8).join(""), 2));
      for (let pad = 0xec; data.length < capacity / 8; pad ^= 0xec ^ 0x11) data.push(pad);
      return { version: v, codewords: interleave(v, data) };
    }
    throw new Error("text too long for a QR code");
  }

  function interleave(v, data) {
    const [ec, n1, d1, n2, d2] = BLOCKS[v - 1], blocks = [];
    let at = 0;
    for (let i = 0; i < n1 + n2; i++) {
      const size = i < n1 ? d1 : d2;
      blocks.push(data.slice(at, at + size));
      at += size;
    }
    const out = [];
    for (let i = 0; i < Math.max(d1, d2); i++) blocks.forEach((b) => { if (i < b.length) out.push(b[i]); });
    const ecs = blocks.map((b) => remainder(b, ec));
    for (let i = 0; i < ec; i++) ecs.forEach((e) => out.push(e[i]));
    return out;
  }

  // -- the symbol --------------------------------------------------------------------------
  function alignment(v) {
    if (v === 1) return [];
    const count = Math.floor(v / 7) + 2, size = 17 + 4 * v;
    const step = v === 32 ? 26 : Math.ceil((size - 13) / (count - 1) / 2) * 2;
    const out = [6];
    for (let pos = size - 7; out.length < count; pos -= step) out.splice(1, 0, pos);
    return out;
  }

  const MASKS = [
    (i, j) => (i + j) % 2 === 0, (i) => i % 2 === 0, (i, j) => j % 3 === 0, (i, j) => (i + j) % 3 === 0,
    (i, j) => (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0, (i, j) => ((i * j) % 2) + ((i * j) % 3) === 0,
    (i, j) => (((i * j) % 2) + ((i * j) % 3)) % 2 === 0, (i, j) => (((i + j) % 2) + ((i * j) % 3)) % 2 === 0,
  ];

  function base(version, words) {
    const size = 17 + 4 * version;
    const dark = Array.from({ length: size }, () => new Array(size).fill(false));
    const fixed = Array.from({ length: size }, () => new Array(size).fill(false));
    const set = (r, c, on) => { dark[r][c] = on; fixed[r][c] = true; };
    for (const [r0, c0] of [[0, 0], [0, size - 7], [size - 7, 0]]) {
      for (let r = -1; r <= 7; r++) for (let c = -1; c <= 7; c++) {
        const rr = r0 + r, cc = c0 + c;
        if (rr < 0 || cc < 0 || rr >= size || cc >= size) continue;
        const ring = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        set(rr, cc, ring !== 2 && ring !== 4);
      }
    }
    const centres = alignment(version);
    for (const r of centres) for (const c of centres) {
      if (fixed[r][c]) continue; // under a finder
      for (let dr = -2; dr <= 2; dr++) for (let dc = -2; dc <= 2; dc++) set(r + dr, c + dc, Math.max(Math.abs(dr), Math.abs(dc)) !== 1);
    }
    for (let i = 8; i < size - 8; i++) { set(6, i, i % 2 === 0); set(i, 6, i % 2 === 0); } // agrees with any pattern it crosses
    // format and version areas (filled in later) and the dark module, left light for now
    for (let i = 0; i < 9; i++) if (i !== 6) { set(8, i, false); set(i, 8, false); } // 6: the timing pattern
    for (let i = 0; i < 8; i++) { set(8, size - 1 - i, false); set(size - 1 - i, 8, false); }
    if (version >= 7) for (let i = 0; i < 6; i++) for (let j = 0; j < 3; j++) { set(i, size - 11 + j, false); set(size - 11 + j, i, false); }
    // the data, in two-module columns from the bottom right, up and down in turn
    const bits = [];
    words.forEach((w) => push(bits, w, 8));
    let k = 0;
    for (let right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      const upward = ((right + 1) & 2) === 0;
      for (let n = 0; n < size; n++) {
        const r = upward ? size - 1 - n : n;
        for (let c = right; c > right - 2; c--) {
          if (fixed[r][c]) continue;
          dark[r][c] = k < bits.length ? bits[k] === 1 : false;
          k++;
        }
      }
    }
    return { size, dark, fixed };
  }

  function masked(sym, mask) {
    const f = MASKS[mask];
    return sym.dark.map((row, i) => row.map((on, j) => (sym.fixed[i][j] ? on : on !== f(i, j))));
  }

  function withInfo(m, version, mask) {
    const size = m.length;
    let rem = (EC_M << 3) | mask;
    for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
    const format = ((((EC_M << 3) | mask) << 10) | rem) ^ 0x5412;
    const bit = (x, i) => ((x >>> i) & 1) === 1;
    for (let i = 0; i < 15; i++) {
      const on = bit(format, i);
      // around the top-left finder
      if (i < 6) m[i][8] = on; else if (i < 8) m[i + 1][8] = on; else m[size - 15 + i][8] = on;
      // beside the top-right and bottom-left finders
      if (i < 8) m[8][size - 1 - i] = on; else if (i < 9) m[8][15 - i] = on; else m[8][14 - i] = on;
    }
    m[size - 8][8] = true;
    if (version >= 7) {
      let v = version;
      for (let i = 0; i < 12; i++) v = (v << 1) ^ ((v >>> 11) * 0x1f25);
      const info = (version << 12) | v;
      for (let i = 0; i < 18; i++) {
        const on = bit(info, i), a = size - 11 + (i % 3), b = Math.floor(i / 3);
        m[b][a] = on; m[a][b] = on;
      }
    }
    return m;
  }

  // The penalty of ISO/IEC 18004 7.8.3, computed as qrcode.util.lost_point does.
  function penalty(m) {
    const n = m.length;
    let score = 0, darkCount = 0;
    const lines = [m, m[0].map((_, c) => m.map((row) => row[c]))];
    for (const grid of lines) {
      for (const row of grid) {
        let run = 1;
        for (let j = 1; j <= n; j++) {
          if (j < n && row[j] === row[j - 1]) { run++; continue; }
          if (run >= 5) score += run - 2;
          run = 1;
        }
        for (let j = 0; j + 11 <= n; j++) {
          let v = 0;
          for (let b = 0; b < 11; b++) v = (v << 1) | (row[j + b] ? 1 : 0);
          if (v === 0b10111010000 || v === 0b00001011101) score += 40;
        }
      }
    }
    for (let i = 0; i < n - 1; i++) for (let j = 0; j < n - 1; j++) {
      const c = m[i][j];
      if (c === m[i][j + 1] && c === m[i + 1][j] && c === m[i + 1][j + 1]) score += 3;
    }
    m.forEach((row) => row.forEach((on) => { if (on) darkCount++; }));
    return score + Math.floor(Math.abs((darkCount * 100) / (n * n) - 50) / 5) * 10;
  }

  function matrix(text, mask) {
    const { version, codewords: words } = codewords(text);
    const sym = base(version, words);
    if (mask === undefined) {
      let best = Infinity;
      for (let k = 0; k < 8; k++) {
        const score = penalty(masked(sym, k)); // format and version areas light, as qrcode scores
        if (score < best) { best = score; mask = k; }
      }
    }
    return withInfo(masked(sym, mask), version, mask);
  }

  function svg(text, label) {
    const m = matrix(text), quiet = 4, size = m.length + 2 * quiet, ns = "http://www.w3.org/2000/svg";
    let d = "";
    m.forEach((row, r) => {
      for (let c = 0; c < row.length; c++) {
        if (!row[c]) continue;
        let end = c;
        while (end + 1 < row.length && row[end + 1]) end++;
        d += `M${c + quiet} ${r + quiet}h${end - c + 1}v1h-${end - c + 1}z`;
        c = end;
      }
    });
    const el = document.createElementNS(ns, "svg");
    el.setAttribute("viewBox", `0 0 ${size} ${size}`);
    el.setAttribute("class", "qr");
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", label || "QR code");
    el.setAttribute("shape-rendering", "crispEdges");
    const bg = document.createElementNS(ns, "rect");
    bg.setAttribute("width", size); bg.setAttribute("height", size); bg.setAttribute("fill", "#fff");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d); path.setAttribute("fill", "#000");
    el.append(bg, path);
    return el;
  }

  global.tapstackQr = { matrix, svg };
})(window);
