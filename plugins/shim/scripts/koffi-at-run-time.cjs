// koffi in the shim's start-up snapshot: a native addon cannot be part of a V8 snapshot, so the
// bundle gets this stand-in, which loads the real koffi (from the path the build resolved) on
// first use, in the running shim. berth's code only touches koffi inside functions.
let real;
const load = () => {
  real ??= require('node:module').createRequire(__filename)(KOFFI_PATH);
  return real;
};
module.exports = new Proxy(
  {},
  {
    get: (_, key) => (key === '__esModule' ? false : load()[key]),
    has: (_, key) => key in load(),
  },
);
