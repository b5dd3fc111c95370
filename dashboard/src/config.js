// Runtime configuration of the ESSEN dashboard.  Replace this file per
// deployment (nothing is rebuilt); every field is optional:
//
// window.ESSEN_CONFIG = {
//   apiBase: "/api",                  // REST base: a path or an absolute URL
//   socketPath: "/api/socket.io/",    // Socket.IO path on the server
//   socketUrl: "https://admin.example.com", // Socket.IO origin (no path!); default: this page's origin
//   transports: ["websocket"],        // or ["polling", "websocket"]
//   feedLimit: 100,                   // messages kept in the live feed
// };
window.ESSEN_CONFIG = window.ESSEN_CONFIG || {};
