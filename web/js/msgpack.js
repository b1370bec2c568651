// The vendored @msgpack/msgpack UMD bundle (loaded by index.html as a classic script, before any
// module runs) defines the global `MessagePack`; this module hands its codec to the ES modules so
// nothing else touches the global.
const lib = globalThis.MessagePack;
if (!lib) {
  throw new Error("vendor/msgpack/msgpack.min.js did not load");
}

export const encode = lib.encode;
export const decode = lib.decode;
