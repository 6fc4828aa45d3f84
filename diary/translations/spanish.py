"""The Spanish translations, kept as Python so that a reviewer reads them beside the English and
``make translations`` can rebuild es/LC_MESSAGES/messages.po from the extracted template.

Register: usted, plain words, as a participant information sheet in US Spanish would.
"""
SPANISH = {
    "Please choose none, mild, moderate or severe for %(term)s.":
        "Por favor elija ninguno, leve, moderado o grave para %(term)s.",
    "Please move the slider to answer.": "Por favor mueva el control deslizante para responder.",
    "Please answer this question.": "Por favor responda esta pregunta.",
    "Please give a whole number from %(low)s to %(high)s.": "Por favor indique un número entero de %(low)s a %(high)s.",
    "Please pick one of the choices.": "Por favor elija una de las opciones.",
    "Please keep this to %(most)s characters (you wrote %(count)s).":
        "Por favor use como máximo %(most)s caracteres (escribió %(count)s).",
    "This entry is no longer needed.": "Esta entrada ya no es necesaria.",
    "This entry opens after your infusion has started.": "Esta entrada se abre después de que comience su infusión.",
    "This entry is not open yet. It opens %(when)s.": "Esta entrada todavía no está abierta. Se abre %(when)s.",
    "This entry is not open yet. Please come back when it opens.":
        "Esta entrada todavía no está abierta. Por favor vuelva cuando se abra.",
    "Sorry, the time for this entry has passed, so it cannot be saved. That is all right: just do the next one when it opens.":
        "Lo sentimos, el plazo de esta entrada ya pasó y no se puede guardar. No se preocupe: complete la "
        "siguiente cuando se abra.",
    "This form was already used for another entry.": "Este formulario ya se usó para otra entrada.",
    "This entry has already been saved. It cannot be changed here.":
        "Esta entrada ya se guardó. No se puede cambiar aquí.",
    "today %(time)s": "hoy %(time)s",
    "tomorrow %(time)s": "mañana %(time)s",
    "yesterday %(time)s": "ayer %(time)s",
    "Your PIN must be 4 to 6 digits (numbers only).": "Su PIN debe tener de 4 a 6 dígitos (solo números).",
    "That PIN is too easy to guess (all one digit, or digits in a row). Please choose another.":
        "Ese PIN es demasiado fácil de adivinar (un solo dígito repetido o dígitos seguidos). Por favor elija otro.",
    "The two PINs are not the same. Please type the same PIN twice.":
        "Los dos PIN no son iguales. Por favor escriba el mismo PIN dos veces.",
    "None": "Ninguno",
    "Mild": "Leve",
    "Moderate": "Moderado",
    "Severe": "Grave",
    "Your diary entry is open": "Su entrada del diario está abierta",
    "Your diary entry closes soon": "Su entrada del diario se cierra pronto",
    "My diary": "Mi diario",
    "Diary: Infusion %(number)s · %(label)s": "Diario: Infusión %(number)s · %(label)s",
    "Please fill in your diary entry between %(start)s and %(end)s.":
        "Por favor complete su entrada del diario entre %(start)s y %(end)s.",
    "Your diary: an entry is open": "Su diario: hay una entrada abierta",
    "Your diary: an entry closes soon": "Su diario: una entrada se cierra pronto",
    "Hello,": "Hola:",
    "Your diary entry %(label)s is open now.": "Su entrada del diario %(label)s está abierta ahora.",
    "Your diary entry %(label)s closes soon.": "Su entrada del diario %(label)s se cierra pronto.",
    "Please fill it in before %(when)s.": "Por favor complétela antes de %(when)s.",
    "Open your diary": "Abra su diario",
    "Thank you.": "Gracias.",
    "Infusion %(number)s · %(label)s": "Infusión %(number)s · %(label)s",
    "Something was wrong with that request": "Hubo un problema con esa solicitud",
    "Please go back and try again. Nothing was saved.": "Por favor regrese e inténtelo de nuevo. No se guardó nada.",
    "This page is not for you": "Esta página no es para usted",
    "You do not have access to this page. If you think you should, contact your study team.":
        "No tiene acceso a esta página. Si cree que debería tenerlo, comuníquese con su equipo del estudio.",
    "Page not found": "Página no encontrada",
    "The page you asked for does not exist. Please check the link.":
        "La página que pidió no existe. Por favor revise el enlace.",
    "That did not work": "Eso no funcionó",
    "This page cannot be used that way. Nothing was saved.": "Esta página no se puede usar así. No se guardó nada.",
    "That could not be saved": "No se pudo guardar",
    "It was already done, or it is no longer possible.": "Ya se había hecho, o ya no es posible.",
    "That was too much to send": "Eso era demasiado para enviar",
    "What you sent was larger than the diary accepts. Nothing was saved.":
        "Lo que envió es más grande de lo que acepta el diario. No se guardó nada.",
    "Please check your answers and try again.": "Por favor revise sus respuestas e inténtelo de nuevo.",
    "Please wait a moment": "Por favor espere un momento",
    "Too many attempts. Please wait and try again later.": "Demasiados intentos. Por favor espere e inténtelo más tarde.",
    "Sorry, something went wrong on our side": "Lo sentimos, algo falló de nuestro lado",
    "Nothing you entered was half-saved. Please try again in a few minutes, or contact your study team.":
        "Nada de lo que escribió quedó guardado a medias. Por favor inténtelo de nuevo en unos minutos o "
        "comuníquese con su equipo del estudio.",
    "This form has expired or did not come from this site. Please reload the page and try again. Nothing was saved.":
        "Este formulario venció o no vino de este sitio. Por favor vuelva a cargar la página e inténtelo de nuevo. "
        "No se guardó nada.",
    ("That PIN is not right. %(num)d try left before the diary locks for a while.",
     "That PIN is not right. %(num)d tries left before the diary locks for a while."):
        ("Ese PIN no es correcto. Le queda %(num)d intento antes de que el diario se bloquee por un rato.",
         "Ese PIN no es correcto. Le quedan %(num)d intentos antes de que el diario se bloquee por un rato."),
    "None of these": "Ninguno de estos",
    "Not answered": "Sin respuesta",
    "Marked on the line between “%(low)s” and “%(high)s”": "Marcado en la línea entre «%(low)s» y «%(high)s»",
    "%(value)s out of 10": "%(value)s de 10",
    "This page was open for a long time, so for your safety it needs one more tap. Your answers are still here: please check them and press the button again.":
        "Esta página estuvo abierta mucho tiempo, así que por su seguridad necesita un toque más. Sus respuestas "
        "siguen aquí: por favor revíselas y presione el botón otra vez.",
    "Error %(status)s": "Error %(status)s",
    "Welcome": "Bienvenido/a",
    "Symptom diary": "Diario de síntomas",
    "If you take part in a study, open the personal link your study team gave you.":
        "Si participa en un estudio, abra el enlace personal que le dio su equipo del estudio.",
    "Study team members:": "Miembros del equipo del estudio:",
    "sign in": "iniciar sesión",
    "Your symptom diary": "Su diario de síntomas",
    "Participant": "Participante",
    "Scan the code with your phone's camera, or type this address:":
        "Escanee el código con la cámara de su teléfono o escriba esta dirección:",
    "Open the link on your phone. Choose a PIN of 4 to 6 digits.":
        "Abra el enlace en su teléfono. Elija un PIN de 4 a 6 dígitos.",
    "Add the page to your home screen so you can find it again.":
        "Agregue la página a su pantalla de inicio para encontrarla de nuevo.",
    "When an entry is due, the diary shows it on the Today page. Each entry has a time window; please fill it in while it is open.":
        "Cuando le toque una entrada, el diario la muestra en la página Hoy. Cada entrada tiene un plazo; por favor "
        "complétela mientras esté abierta.",
    "If you feel unwell, call the study team. The diary is not watched around the clock.":
        "Si se siente mal, llame al equipo del estudio. Nadie revisa el diario las 24 horas.",
    "This link does not work": "Este enlace no funciona",
    "The link may be old, typed with a mistake, or from another study. Please ask your study team for a new link.":
        "Puede que el enlace sea antiguo, que tenga un error de escritura o que sea de otro estudio. Por favor pida "
        "un enlace nuevo a su equipo del estudio.",
    "Diary": "Diario",
    "Today": "Hoy",
    "My entries": "Mis entradas",
    "Reminders": "Recordatorios",
    "Your diary is closed": "Su diario está cerrado",
    "Your part in this study has ended, so there is nothing more to fill in. Thank you. If you have questions, please contact your study team.":
        "Su participación en este estudio terminó, así que no hay nada más que completar. Gracias. Si tiene "
        "preguntas, comuníquese con su equipo del estudio.",
    "Late, but it can still be saved.": "Tarde, pero todavía se puede guardar.",
    "Open until %(when)s.": "Abierta hasta %(when)s.",
    "Some answers need another look. They are marked below.": "Algunas respuestas necesitan revisión. Están marcadas abajo.",
    "Review my answers": "Revisar mis respuestas",
    "Back to Today": "Volver a Hoy",
    "Saved %(when)s": "Guardada el %(when)s",
    "No entries yet.": "Todavía no hay entradas.",
    "%(question)s 0 means %(low)s, 100 means %(high)s": "%(question)s 0 significa %(low)s, 100 significa %(high)s",
    "I have moved the slider to my answer": "Ya moví el control deslizante a mi respuesta",
    "Not marked yet": "Aún sin marcar",
    "This entry was not made on a form the diary gave for it, so it cannot be counted.":
        "Esta entrada no se hizo en un formulario que el diario diera para ella, así que no puede contarse.",
    "This entry's form was opened when the entry was not open, so it cannot be counted.":
        "El formulario de esta entrada se abrió cuando la entrada no estaba abierta, así que no puede contarse.",
    "The answers cannot have been given before the form was opened.":
        "Las respuestas no pueden haberse dado antes de abrir el formulario.",
    "The diary is busy": "El diario está ocupado",
    "Please try again in a moment. Nothing was saved.": "Inténtelo de nuevo en un momento. No se guardó nada.",
    "Your study team:": "Su equipo del estudio:",
    "This screen is narrower than the diary was tested for, so the scale may not be shown as it was validated. If you can, turn the phone sideways or use a larger screen; your answers still count.":
        "Esta pantalla es más estrecha que aquella con la que se probó el diario, así que la escala puede no verse como se validó. Si puede, gire el teléfono o use una pantalla más grande; sus respuestas cuentan igual.",
    "Questions, or a problem with the diary? Call your study team:":
        "¿Preguntas o un problema con el diario? Llame a su equipo del estudio:",
    "Answered %(when)s": "Respondida %(when)s",
    "Received by the diary %(when)s": "Recibida por el diario %(when)s",
    "Your answers are kept on this phone": "Sus respuestas se guardan en este teléfono",
    "The diary could not be reached just now. Nothing is lost: your answers are kept on this phone and will be sent by themselves the next time you open the diary with a connection. You will see them confirmed then.":
        "No se pudo contactar con el diario en este momento. No se ha perdido nada: sus respuestas se guardan en este teléfono y se enviarán solas la próxima vez que abra el diario con conexión. Entonces verá la confirmación.",
    "I had none of these": "No tuve ninguno de estos",
    "(optional)": "(opcional)",
    "Up to %(count)s characters.": "Hasta %(count)s caracteres.",
    "Please call your study team now:": "Por favor llame ahora a su equipo del estudio:",
    "In an emergency, call your local emergency number.": "En una emergencia, llame al número de emergencias local.",
    "Choose a PIN": "Elija un PIN",
    "Enter your PIN": "Escriba su PIN",
    "Your diary is locked for a while": "Su diario está bloqueado por un rato",
    ("There were too many wrong PINs. Please try again in %(num)d minute. If you forgot your PIN, your study team can reset it.",
     "There were too many wrong PINs. Please try again in %(num)d minutes. If you forgot your PIN, your study team can reset it."):
        ("Hubo demasiados PIN incorrectos. Por favor inténtelo de nuevo en %(num)d minuto. Si olvidó su PIN, su "
         "equipo del estudio puede restablecerlo.",
         "Hubo demasiados PIN incorrectos. Por favor inténtelo de nuevo en %(num)d minutos. Si olvidó su PIN, su "
         "equipo del estudio puede restablecerlo."),
    "Choose 4 to 6 digits you will remember. This phone will stay signed in, so you will rarely need it.":
        "Elija de 4 a 6 dígitos que pueda recordar. Este teléfono seguirá con la sesión iniciada, así que rara vez "
        "lo necesitará.",
    "Welcome back. Enter the PIN you chose.": "Bienvenido/a de nuevo. Escriba el PIN que eligió.",
    "PIN": "PIN",
    "The same PIN again": "El mismo PIN otra vez",
    "Save my PIN": "Guardar mi PIN",
    "Open my diary": "Abrir mi diario",
    "Check your answers": "Revise sus respuestas",
    "Infusion %(number)s · %(label)s.": "Infusión %(number)s · %(label)s.",
    "Nothing is saved until you press “Save my answers”.": "No se guarda nada hasta que presione «Guardar mis respuestas».",
    "Save my answers": "Guardar mis respuestas",
    "Change my answers": "Cambiar mis respuestas",
    "Saved": "Guardada",
    "Saved. Thank you!": "Guardada. ¡Gracias!",
    "Your answers for Infusion %(number)s · %(label)s were saved %(when)s.":
        "Sus respuestas de Infusión %(number)s · %(label)s se guardaron %(when)s.",
    "Next: Infusion %(number)s · %(label)s is open now, until %(when)s.":
        "Siguiente: Infusión %(number)s · %(label)s está abierta ahora, hasta %(when)s.",
    "Next: Infusion %(number)s · %(label)s opens %(when)s.": "Siguiente: Infusión %(number)s · %(label)s se abre %(when)s.",
    "There is nothing more to fill in for now.": "Por ahora no hay nada más que completar.",
    "Saved.": "Guardado.",
    "On this phone": "En este teléfono",
    "Get a notification on this phone when an entry opens and before it closes.":
        "Reciba un aviso en este teléfono cuando se abra una entrada y antes de que se cierre.",
    "Turn on reminders": "Activar recordatorios",
    "Phone notifications are not set up on this server.": "Los avisos al teléfono no están configurados en este servidor.",
    "This needs a browser that supports notifications.": "Esto necesita un navegador que admita avisos.",
    "Which reminders": "Qué recordatorios",
    "Email reminders": "Recordatorios por correo electrónico",
    "Phone notifications": "Avisos en el teléfono",
    "Calendar": "Calendario",
    "Language of your diary and reminders": "Idioma de su diario y recordatorios",
    "Save": "Guardar",
    "Add to your calendar": "Agregar a su calendario",
    "Your phone's calendar can remind you even without the internet. Subscribe to this address in your calendar app (it is personal: do not share it):":
        "El calendario de su teléfono puede recordárselo incluso sin internet. Suscríbase a esta dirección en su "
        "aplicación de calendario (es personal: no la comparta):",
    "Subscribe": "Suscribirse",
    "Please open your link": "Por favor abra su enlace",
    "Please open your personal link": "Por favor abra su enlace personal",
    "This phone is not signed in to your diary any more. Open the personal link your study team gave you (it is also in every reminder) and enter your PIN.":
        "Este teléfono ya no tiene la sesión iniciada en su diario. Abra el enlace personal que le dio su equipo del "
        "estudio (también está en cada recordatorio) y escriba su PIN.",
    "This entry is late but can still be saved until %(when)s.":
        "Esta entrada está atrasada, pero todavía se puede guardar hasta %(when)s.",
    "Fill in now": "Completar ahora",
    "Nothing to fill in right now. Thank you!": "No hay nada que completar ahora. ¡Gracias!",
    "Next": "Siguiente",
    "Infusion %(number)s · %(label)s opens %(when)s.": "Infusión %(number)s · %(label)s se abre %(when)s.",
    ("%(num)d recent entry was not filled in (%(labels)s). That happens; there is nothing you need to do.",
     "%(num)d recent entries were not filled in (%(labels)s). That happens; there is nothing you need to do."):
        ("%(num)d entrada reciente no se completó (%(labels)s). Eso pasa; no tiene que hacer nada.",
         "%(num)d entradas recientes no se completaron (%(labels)s). Eso pasa; no tiene que hacer nada."),
    "on this phone, by email or in your calendar.": "en este teléfono, por correo electrónico o en su calendario.",
    "Sign out of this phone": "Cerrar sesión en este teléfono",
    "An entry kept on this phone was sent and saved. Thank you!":
        "Una entrada guardada en este teléfono se envió y se guardó. ¡Gracias!",
    "An entry kept on this phone could not be counted:": "Una entrada guardada en este teléfono no se pudo contar:",
    "No connection: your answers are saved on this phone. They will be sent when the connection is back, and you will see them confirmed here.":
        "Sin conexión: sus respuestas están guardadas en este teléfono. Se enviarán cuando vuelva la conexión y "
        "verá aquí la confirmación.",
    "No connection, so the answers cannot be checked by the diary: please answer every question before saving.":
        "Sin conexión, el diario no puede revisar las respuestas: por favor responda todas las preguntas antes de "
        "guardar.",
    "No connection, and this phone could not keep the answers. Please try again when you are connected.":
        "Sin conexión, y este teléfono no pudo guardar las respuestas. Por favor inténtelo de nuevo cuando tenga "
        "conexión.",
    "Put the diary on your home screen: it opens like an app, works without a connection and can remind you.":
        "Ponga el diario en su pantalla de inicio: se abre como una aplicación, funciona sin conexión y puede "
        "recordarle.",
    "Add to home screen": "Agregar a la pantalla de inicio",
    "On an iPhone: tap the Share button, then “Add to Home Screen”. Reminders on an iPhone need this.":
        "En un iPhone: toque el botón Compartir y luego «Agregar a inicio». Los recordatorios en un iPhone lo "
        "necesitan.",
    "No connection": "Sin conexión",
    "No connection right now": "Sin conexión en este momento",
    "This page needs the internet. Entries you open while connected can be filled in without a connection: they are kept on this phone and sent when the connection is back.":
        "Esta página necesita internet. Las entradas que abra con conexión se pueden completar sin conexión: se "
        "guardan en este teléfono y se envían cuando vuelve la conexión.",
    "This phone's clock is %(minutes)d minutes away from the real time, so the time of this entry cannot be trusted and it was not saved. Please set the phone's clock to automatic.":
        "El reloj de este teléfono está %(minutes)d minutos desfasado de la hora real, así que la hora de esta "
        "entrada no es confiable y no se guardó. Por favor ponga el reloj del teléfono en automático.",
    "This entry was kept on the phone for more than %(hours)d hours before it could be sent, so it cannot be counted. Your study team can see that it was made.":
        "Esta entrada estuvo guardada en el teléfono más de %(hours)d horas antes de poder enviarse, así que no "
        "se puede contar. Su equipo del estudio puede ver que se hizo.",
    "The answers cannot have been given in the future.": "Las respuestas no pueden haberse dado en el futuro.",
    "Reminders are on for this phone.": "Los recordatorios están activados en este teléfono.",
    "That did not work. Please try again later.": "Eso no funcionó. Por favor inténtelo más tarde.",
    "Notifications are blocked or not supported in this browser.":
        "Los avisos están bloqueados o este navegador no los admite.",
}
