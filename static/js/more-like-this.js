// "More like this" follows the box editor's image: the editor moves between images without a
// reload (box-editor.js) and announces each one with its "box-editor:load" event, whose detail
// is the editor data ({imageId, …}); the link then points at that image's set.
//
// Expects (templates/labeling/box_editor.html):
//   <div data-box-editor="ID-OF-JSON-SCRIPT">
//     <a data-more-like="/projects/1/?like=" href="/projects/1/?like=7">More like this</a>
//   </div>

const root = document.querySelector("[data-box-editor]");

root?.addEventListener("box-editor:load", (event) => {
  const imageId = event.detail?.imageId;
  if (imageId === undefined) return;
  for (const link of root.querySelectorAll("a[data-more-like]")) {
    link.href = `${link.dataset.moreLike}${imageId}`;
  }
});
