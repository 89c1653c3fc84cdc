// ONNX files written by hand: the few protobuf messages a model needs (ModelProto, GraphProto,
// NodeProto, TensorProto, ValueInfoProto, AttributeProto, OperatorSetIdProto) in protobuf's wire
// format, and a small graph builder that names values as it goes. Field numbers as onnx/onnx.proto.
// A protobuf message may not exceed 2 GiB, so weights above that are refused (no external data).
// Tensor data is referenced until the end and copied once into the file's buffer, so exporting
// needs about twice the weights' size in memory.

/** TensorProto.DataType */
export const ONNX_FLOAT = 1;
export const ONNX_INT64 = 7;
export const ONNX_BOOL = 9;

export class OnnxExportError extends Error {
  override name = 'OnnxExportError';
}

// ── protobuf wire format ────────────────────────────────────────────────────────────────────────

/**
 * Protobuf's encodings into a list of byte chunks: large byte fields (tensor data) and nested
 * messages are kept by reference and copied once, by finish(), into the file's single buffer.
 */
class Writer {
  private readonly parts: Uint8Array[] = [];
  private scratch = new Uint8Array(256);
  private used = 0;
  /** Bytes written so far (chunks + scratch). */
  length = 0;

  private room(n: number): void {
    if (this.used + n <= this.scratch.length) return;
    this.flush();
    if (n > this.scratch.length) this.scratch = new Uint8Array(n);
  }

  private flush(): void {
    if (this.used === 0) return;
    this.parts.push(this.scratch.subarray(0, this.used));
    this.scratch = new Uint8Array(this.scratch.length);
    this.used = 0;
  }

  /** An unsigned varint (negative int64 as two's complement, 10 bytes). */
  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    this.room(10);
    const start = this.used;
    while (x >= 0x80n) {
      this.scratch[this.used++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.scratch[this.used++] = Number(x);
    this.length += this.used - start;
  }

  tag(field: number, wire: 0 | 2 | 5): void {
    this.varint((field << 3) | wire);
  }

  /** A length-delimited field; chunks of 4 KiB and more are referenced, not copied. */
  bytes(field: number, b: Uint8Array): void {
    this.tag(field, 2);
    this.varint(b.length);
    if (b.length >= 4096) {
      this.flush();
      this.parts.push(b);
    } else {
      this.room(b.length);
      this.scratch.set(b, this.used);
      this.used += b.length;
    }
    this.length += b.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  int(field: number, v: number | bigint): void {
    this.tag(field, 0);
    this.varint(v);
  }

  float(field: number, v: number): void {
    this.tag(field, 5);
    this.room(4);
    new DataView(this.scratch.buffer, this.scratch.byteOffset + this.used, 4).setFloat32(0, v, true);
    this.used += 4;
    this.length += 4;
  }

  /** A nested message: written by `write` into its own chunks, which are then appended by reference. */
  message(field: number, write: (w: Writer) => void): void {
    const inner = new Writer();
    write(inner);
    inner.flush();
    this.tag(field, 2);
    this.varint(inner.length);
    this.flush();
    for (const p of inner.parts) this.parts.push(p);
    this.length += inner.length;
  }

  /** Everything written, in one buffer (the one copy of each chunk). */
  finish(): Uint8Array {
    this.flush();
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

// ── the graph ───────────────────────────────────────────────────────────────────────────────────

export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };

interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs: Record<string, AttrValue>;
}

interface Initializer {
  name: string;
  dims: number[];
  type: number;
  raw: Uint8Array;
}

interface ValueInfo {
  name: string;
  type: number;
  dims: Dim[];
}

/** Builds one ONNX graph: initializers, nodes in topological order (the order they are added), inputs and outputs. */
export class OnnxGraph {
  private readonly nodes: NodeSpec[] = [];
  private readonly inits: Initializer[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly names = new Set<string>();
  private readonly constants = new Map<string, string>();
  private counter = 0;
  private rawBytes = 0;

  constructor(readonly name: string) {}

  private unique(base: string): string {
    let n = base;
    while (this.names.has(n)) n = `${base}_${++this.counter}`;
    this.names.add(n);
    return n;
  }

  input(name: string, type: number, dims: Dim[]): string {
    this.inputs.push({ name: this.unique(name), type, dims });
    return name;
  }

  /** Declare an existing value (a node output already named `name`) as a graph output. */
  declareOutput(name: string, type: number, dims: Dim[]): void {
    this.outputs.push({ name, type, dims });
  }

  output(value: string, name: string, type: number, dims: Dim[]): void {
    // The output takes the name asked for: an Identity renames the value.
    this.node('Identity', [value], {}, [name]);
    this.outputs.push({ name, type, dims });
  }

  /** A float32 initializer. The graph keeps `values` (no copy) until serialize(): do not change them. */
  weight(name: string, dims: number[], values: Float32Array): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (values.length !== n) throw new OnnxExportError(`initializer ${name}: ${values.length} values for shape [${dims.join(', ')}]`);
    const raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    return this.addInit(name, dims, ONNX_FLOAT, raw);
  }

  /** A 1-D int64 initializer (shapes, axes, split sizes); one per distinct value list. */
  ints(name: string, values: readonly number[]): string {
    const key = `i64[${values.join(',')}]`;
    return this.constant(key, () => this.addInit(name, [values.length], ONNX_INT64, new Uint8Array(new BigInt64Array(values.map((v) => BigInt(v))).buffer)));
  }

  /** An int64 scalar initializer. */
  intScalar(name: string, value: number): string {
    return this.constant(`i64(${value})`, () => this.addInit(name, [], ONNX_INT64, new Uint8Array(BigInt64Array.of(BigInt(value)).buffer)));
  }

  /** A float32 scalar initializer; one per distinct value. */
  scalar(name: string, value: number): string {
    return this.constant(`f32(${Object.is(value, -0) ? '-0' : value})`, () => this.addInit(name, [], ONNX_FLOAT, new Uint8Array(Float32Array.of(value).buffer)));
  }

  private constant(key: string, make: () => string): string {
    let n = this.constants.get(key);
    if (!n) {
      n = make();
      this.constants.set(key, n);
    }
    return n;
  }

  private addInit(name: string, dims: number[], type: number, raw: Uint8Array): string {
    const n = this.unique(name);
    this.rawBytes += raw.byteLength;
    // Protobuf messages are limited to 2 GiB; leave room for the graph itself.
    if (this.rawBytes > 2 ** 31 - 2 ** 24) {
      throw new OnnxExportError(`the model's weights exceed what one .onnx file can hold (2 GiB, protobuf's limit) at ${name}; ONNX external data is not supported yet`);
    }
    this.inits.push({ name: n, dims, type, raw });
    return n;
  }

  /** Add a node; returns its first output (named after the node unless `outputs` are given). */
  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs?: string[], name?: string): string {
    const nodeName = this.unique(name ?? op);
    const outs = outputs ?? [nodeName];
    for (const o of outputs ?? []) this.names.add(o);
    this.nodes.push({ op, inputs, outputs: outs, name: nodeName, attrs });
    return outs[0];
  }

  /** A node with several outputs; returns them all. */
  nodeN(op: string, inputs: string[], count: number, attrs: Record<string, AttrValue> = {}, name?: string): string[] {
    const base = this.unique(name ?? op);
    const outs = Array.from({ length: count }, (_, i) => this.unique(`${base}_out${i}`));
    this.nodes.push({ op, inputs, outputs: outs, name: base, attrs });
    return outs;
  }

  /** The ModelProto bytes (IR version 8, the default ONNX domain at `opset`). */
  serialize(opts: { opset: number; producer: string; producerVersion: string; doc?: string; metadata?: Record<string, string> }): Uint8Array {
    const m = new Writer();
    m.int(1, 8); // ir_version
    m.string(2, opts.producer);
    m.string(3, opts.producerVersion);
    if (opts.doc) m.string(6, opts.doc);
    m.message(7, (g) => this.writeGraph(g));
    m.message(8, (o) => {
      o.string(1, '');
      o.int(2, opts.opset);
    });
    for (const [k, v] of Object.entries(opts.metadata ?? {})) {
      m.message(14, (e) => {
        e.string(1, k);
        e.string(2, v);
      });
    }
    return m.finish();
  }

  private writeGraph(g: Writer): void {
    for (const n of this.nodes) g.message(1, (w) => writeNode(w, n));
    g.string(2, this.name);
    for (const t of this.inits) g.message(5, (w) => writeTensor(w, t));
    for (const v of this.inputs) g.message(11, (w) => writeValueInfo(w, v));
    for (const v of this.outputs) g.message(12, (w) => writeValueInfo(w, v));
  }
}

function writeNode(w: Writer, n: NodeSpec): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.op);
  for (const [name, v] of Object.entries(n.attrs)) w.message(5, (a) => writeAttr(a, name, v));
}

/** AttributeProto: an integer is INT (2), a list INTS (7), a string STRING (3); floats are tagged. */
function writeAttr(a: Writer, name: string, v: AttrValue): void {
  a.string(1, name);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new OnnxExportError(`attribute ${name}: ${v} is not an integer (use { float })`);
    a.int(3, v);
    a.int(20, 2);
  } else if (typeof v === 'string') {
    a.bytes(4, new TextEncoder().encode(v));
    a.int(20, 3);
  } else if (Array.isArray(v)) {
    for (const x of v) a.int(8, x);
    a.int(20, 7);
  } else if ('float' in v) {
    a.float(2, v.float);
    a.int(20, 1);
  } else {
    for (const x of v.floats) a.float(7, x);
    a.int(20, 6);
  }
}

function writeTensor(w: Writer, t: Initializer): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.type);
  w.string(8, t.name);
  w.bytes(9, t.raw);
}

function writeValueInfo(w: Writer, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.type);
      tensor.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}
