// MathJax reads this before it loads (assets/mathjax/tex-chtml.js, served by the site itself).
// pymdownx.arithmatex wraps each formula in an element of class "arithmatex" with \( \) or \[ \]
// delimiters; typeset those and nothing else.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
