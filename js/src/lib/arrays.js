// Decoding of the binary buffers that the Python side sends (traitlets.Bytes arrive as DataView).

/** Typed-array view of a DataView, ArrayBuffer, typed array or plain array, without copying when aligned. */
export function asTyped(value, Type) {
  if (value == null) return new Type(0);
  if (value instanceof Type) return value;
  if (Array.isArray(value)) return Type.from(value);
  let buffer, offset, length;
  if (value instanceof ArrayBuffer) {
    buffer = value; offset = 0; length = value.byteLength;
  } else if (ArrayBuffer.isView(value)) {
    buffer = value.buffer; offset = value.byteOffset; length = value.byteLength;
  } else {
    throw new TypeError(`cannot decode ${Object.prototype.toString.call(value)} as ${Type.name}`);
  }
  if (length % Type.BYTES_PER_ELEMENT !== 0) {
    throw new RangeError(`${length} bytes is not a whole number of ${Type.name} elements`);
  }
  if (offset % Type.BYTES_PER_ELEMENT === 0) return new Type(buffer, offset, length / Type.BYTES_PER_ELEMENT);
  return new Type(buffer.slice(offset, offset + length));
}

export const asFloat32 = (value) => asTyped(value, Float32Array);
export const asInt32 = (value) => asTyped(value, Int32Array);
export const asUint8 = (value) => asTyped(value, Uint8Array);

/** Decode base64 (the static HTML export's encoding of buffers) into a DataView. */
export function base64ToDataView(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new DataView(bytes.buffer);
}
