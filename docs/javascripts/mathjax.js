// MathJax 3 configuration for pymdownx.arithmatex (generic: true), as documented by
// mkdocs-material ("Math" in its reference). arithmatex wraps each formula in an element of class
// "arithmatex" with \( \) or \[ \] delimiters; MathJax typesets only those elements, so a stray
// "$" or "\(" elsewhere in a page (code, regexes) is left alone.
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

// mkdocs-material's instant navigation swaps pages without a reload: typeset each new page.
document$.subscribe(() => {
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
