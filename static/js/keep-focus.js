// Forms that htmx swaps out with their section (Settings: add or rename a tag, add a member):
// focus comes back to the field the user was typing in, so adding tags one after another
// needs no mouse. htmx's own focus restore goes by id, and Settings has two `id_name` fields
// (project name, tag name): it would land in the project's name.
//
// Expects:
//   <section id="tags-section" data-keep-focus>        (the hx-target, swapped outerHTML)
//     <form hx-post="URL"> <input name="name"> … <button type="submit"> </form>
//   </section>
// The form is found again by its hx-post URL; the field by its name. A submit button had the
// focus (a click, or Enter on it): the form's first field gets it, ready for the next entry.
let remembered = null;

const formKey = (form) => form?.getAttribute("hx-post") || form?.getAttribute("action");
const FIELDS = "input:not([type=hidden]):not([type=submit]), select, textarea";

document.body.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.detail.elt?.closest?.("form");
  const section = form?.closest("[data-keep-focus]");
  if (!section) return;
  const active = document.activeElement;
  const field = form.contains(active) && active.matches(FIELDS) ? active : form.querySelector(FIELDS);
  remembered = field ? { section: section.id, form: formKey(form), name: field.name } : null;
});

document.body.addEventListener("htmx:afterSettle", () => {
  if (!remembered) return;
  const { section, form, name } = remembered;
  remembered = null;
  const forms = document.getElementById(section)?.querySelectorAll("form") || [];
  const field = [...forms].find((f) => formKey(f) === form)?.elements.namedItem(name);
  if (field instanceof HTMLElement) field.focus();
});
