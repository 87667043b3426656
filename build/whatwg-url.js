// Bundle-time stand-in for whatwg-url: node-fetch 2 uses it only when Node lacks URL
// (`Url.URL || whatwgUrl.URL`), which Node ≥ 10 never does. Saves its 250 KB tr46 table at start.
module.exports = { URL: require('node:url').URL };
